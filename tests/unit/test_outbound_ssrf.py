"""The SSRF guard: address rules, URL validation, and the DNS-pinned transport."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from offload.errors import AddressRefusedError, OutboundError, ValidationError
from offload.outbound.ssrf import AddressPolicy, GuardedTransport, validate_url

REFUSED_BY_DEFAULT = [
    "127.0.0.1",
    "127.1.2.3",
    "::1",
    "::ffff:127.0.0.1",  # IPv4-mapped loopback; is_loopback is False on it
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "100.64.0.1",  # CGNAT, missed by is_private
    "169.254.169.254",  # cloud metadata
    "::ffff:169.254.169.254",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "0.0.0.0",
    "::",
    "224.0.0.1",
    "ff02::1",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "192.0.2.1",  # TEST-NET-1
    "2002:7f00:1::",  # 6to4 wrapping 127.0.0.1 (is_global is True on it)
    "2002:a9fe:a9fe::",  # 6to4 wrapping 169.254.169.254
    "64:ff9b::a9fe:a9fe",  # NAT64 wrapping metadata (is_global is True on it)
    "64:ff9b::7f00:1",
    "::ffff:10.0.0.1",
    "::127.0.0.1",  # deprecated IPv4-compatible; Python calls it global
    "::ffff:0:7f00:1",  # IPv4-translated loopback
    "64:ff9b:1::7f00:1",  # local-use NAT64 prefix
    "fec0::1",  # deprecated site-local; Python calls it global
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
]


@pytest.mark.parametrize("ip", REFUSED_BY_DEFAULT)
def test_check_ip__non_public_refused_by_default(ip: str) -> None:
    with pytest.raises(AddressRefusedError, match="refused"):
        AddressPolicy().check_ip(ip)


@pytest.mark.parametrize(
    "ip",
    [
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",  # NAT64 of a public address (IPv6-only networks need it)
        "2002:808:808::1",  # 6to4 of a public address
    ],
)
def test_check_ip__public_allowed(ip: str) -> None:
    AddressPolicy().check_ip(ip)


def test_check_ip__message_names_the_reason() -> None:
    with pytest.raises(AddressRefusedError, match=r"169\.254\.169\.254: link-local"):
        AddressPolicy().check_ip("169.254.169.254")
    with pytest.raises(AddressRefusedError, match="loopback"):
        AddressPolicy().check_ip("::ffff:127.0.0.1")
    with pytest.raises(AddressRefusedError, match="not an IP address"):
        AddressPolicy().check_ip("example.com")


@pytest.mark.parametrize("ip", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_check_ip__allow_loopback(ip: str) -> None:
    AddressPolicy(allow_loopback=True).check_ip(ip)


def test_check_ip__allow_loopback_opens_nothing_else() -> None:
    policy = AddressPolicy(allow_loopback=True)
    for ip in ("10.0.0.1", "169.254.169.254", "2002:7f00:1::", "0.0.0.0"):
        with pytest.raises(AddressRefusedError):
            policy.check_ip(ip)


def test_check_ip__allow_private_opens_private_not_metadata() -> None:
    policy = AddressPolicy(allow_private=True)
    for ip in ("10.0.0.1", "192.168.1.1", "172.31.255.255", "100.64.0.1", "fd00::1"):
        policy.check_ip(ip)
    for ip in ("169.254.169.254", "fe80::1", "127.0.0.1", "0.0.0.0"):
        with pytest.raises(AddressRefusedError):
            policy.check_ip(ip)


def test_check_ip__allow_list_cidr() -> None:
    policy = AddressPolicy(allow_list=["10.1.0.0/16", "169.254.169.254/32", "fd00::/8"])
    policy.check_ip("10.1.2.3")
    policy.check_ip("::ffff:10.1.2.3")
    policy.check_ip("169.254.169.254")
    policy.check_ip("fd00::5")
    with pytest.raises(AddressRefusedError):
        policy.check_ip("10.2.0.1")
    with pytest.raises(AddressRefusedError):
        policy.check_ip("169.254.169.253")


async def test_resolve_and_check__literal_ip_without_dns() -> None:
    assert await AddressPolicy().resolve_and_check("8.8.8.8", 443) == ["8.8.8.8"]
    assert await AddressPolicy(allow_loopback=True).resolve_and_check("[::1]", 80) == ["::1"]
    with pytest.raises(AddressRefusedError):
        await AddressPolicy().resolve_and_check("127.0.0.1", 80)


async def test_resolve_and_check__localhost_refused() -> None:
    with pytest.raises(AddressRefusedError, match="localhost resolves to"):
        await AddressPolicy().resolve_and_check("localhost", 80)


async def test_resolve_and_check__localhost_allowed_with_loopback() -> None:
    ips = await AddressPolicy(allow_loopback=True).resolve_and_check("localhost", 80)
    assert ips and all(ip in ("127.0.0.1", "::1") for ip in ips)


def _fake_getaddrinfo(monkeypatch: pytest.MonkeyPatch, table: dict[str, list[str]]) -> list[str]:
    """Make loop.getaddrinfo answer from ``table``; return the log of looked-up names."""
    looked_up: list[str] = []

    async def getaddrinfo(
        self: asyncio.AbstractEventLoop, host: str, port: int, **kwargs: Any
    ) -> list[tuple[Any, ...]]:
        looked_up.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        out = []
        for ip in table[host]:
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            addr = (ip, port, 0, 0) if family == socket.AF_INET6 else (ip, port)
            out.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", addr))
        return out

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    return looked_up


async def test_resolve_and_check__one_bad_address_refuses_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_getaddrinfo(monkeypatch, {"mixed.test": ["93.184.216.34", "10.0.0.7"]})
    with pytest.raises(AddressRefusedError, match="10.0.0.7"):
        await AddressPolicy().resolve_and_check("mixed.test", 443)


async def test_resolve_and_check__dedupes_and_keeps_order(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_getaddrinfo(monkeypatch, {"pub.test": ["93.184.216.34", "93.184.216.34", "1.1.1.1"]})
    assert await AddressPolicy().resolve_and_check("pub.test", 443) == [
        "93.184.216.34",
        "1.1.1.1",
    ]


async def test_resolve_and_check__allow_listed_hostname_skips_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_getaddrinfo(monkeypatch, {"api.internal": ["10.0.0.7"], "x.corp.test": ["10.0.0.8"]})
    policy = AddressPolicy(allow_list=["API.internal.", ".corp.test"])
    assert await policy.resolve_and_check("api.internal", 80) == ["10.0.0.7"]
    assert await policy.resolve_and_check("x.corp.test", 80) == ["10.0.0.8"]


async def test_resolve_and_check__unresolvable_is_outbound_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_getaddrinfo(monkeypatch, {})
    with pytest.raises(OutboundError, match="cannot resolve") as info:
        await AddressPolicy().resolve_and_check("nowhere.test", 80)
    assert not isinstance(info.value, AddressRefusedError)


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://example.com/x", "invalid_scheme"),
        ("file:///etc/passwd", "invalid_scheme"),
        ("gopher://example.com", "invalid_scheme"),
        ("example.com/path", "invalid_scheme"),
        ("http://user:pass@example.com/", "userinfo"),
        ("http://user@example.com/", "userinfo"),
        ("http:///path", "missing_host"),
        ("http://example.com:0/", "invalid_port"),
        ("http://example.com:99999/", "invalid_url"),
        ("http://exa mple.com/", "invalid_url"),
        ("http://example.com/\r\nX-Injected: 1", "invalid_url"),
        ("http://[::1/", "invalid_url"),
        ("", "required"),
    ],
)
def test_validate_url__rejects(url: str, code: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_url(url)
    assert info.value.field == "url"
    assert info.value.code == code


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com",
        "http://example.com:8080/a?b=c#d",
        "HTTPS://Example.COM/x",
        "http://[::1]:80/",
    ],
)
def test_validate_url__accepts(url: str) -> None:
    validate_url(url)


# --- the transport --------------------------------------------------------------------


class _Server:
    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    async def __aenter__(self) -> _Server:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[_Server]:
    async with _Server() as srv:
        yield srv


async def test_transport__refuses_loopback_literal(server: _Server) -> None:
    async with httpx.AsyncClient(transport=GuardedTransport(AddressPolicy())) as client:
        with pytest.raises(AddressRefusedError):
            await client.get(f"http://127.0.0.1:{server.port}/")
    assert server.requests == []


async def test_transport__refuses_localhost_name(server: _Server) -> None:
    async with httpx.AsyncClient(transport=GuardedTransport(AddressPolicy())) as client:
        with pytest.raises(AddressRefusedError, match="localhost resolves to"):
            await client.get(f"http://localhost:{server.port}/")
    assert server.requests == []


async def test_transport__allows_loopback_when_told(server: _Server) -> None:
    policy = AddressPolicy(allow_loopback=True)
    async with httpx.AsyncClient(transport=GuardedTransport(policy)) as client:
        response = await client.get(f"http://127.0.0.1:{server.port}/")
    assert response.status_code == 200
    assert response.text == "ok"


async def test_transport__dials_the_checked_address_and_keeps_host(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "pinned.test" exists only in the fake resolver; the request can reach the server
    # only if the transport connects to the address it checked.
    looked_up = _fake_getaddrinfo(monkeypatch, {"pinned.test": ["127.0.0.1"]})
    policy = AddressPolicy(allow_loopback=True)
    async with httpx.AsyncClient(transport=GuardedTransport(policy)) as client:
        response = await client.get(f"http://pinned.test:{server.port}/x")
    assert response.status_code == 200
    assert looked_up == ["pinned.test"]
    assert f"host: pinned.test:{server.port}".encode() in server.requests[0].lower()


async def test_transport__rebinding_name_refused_at_connect(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_getaddrinfo(monkeypatch, {"rebind.test": ["127.0.0.1"]})
    async with httpx.AsyncClient(transport=GuardedTransport(AddressPolicy())) as client:
        with pytest.raises(AddressRefusedError, match="rebind.test resolves to 127.0.0.1"):
            await client.get(f"http://rebind.test:{server.port}/")
    assert server.requests == []


async def test_transport__dns_failure_is_httpx_connect_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_getaddrinfo(monkeypatch, {})
    async with httpx.AsyncClient(transport=GuardedTransport(AddressPolicy())) as client:
        with pytest.raises(httpx.ConnectError, match="cannot resolve"):
            await client.get("http://nowhere.test/")


# --- the engine's client: the guard as aiohttp's resolver -----------------------------


async def test_send__dials_the_checked_address_and_keeps_host(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from offload.outbound.http import build_client, send

    looked_up = _fake_getaddrinfo(monkeypatch, {"pinned.test": ["127.0.0.1"]})
    async with build_client(policy=AddressPolicy(allow_loopback=True)) as client:
        r = await send(client, "GET", f"http://pinned.test:{server.port}/x", headers={},
                       content=None, timeout_s=5)
    assert r.status == 200 and r.body == b"ok"
    assert looked_up == ["pinned.test"]
    assert f"host: pinned.test:{server.port}".encode() in server.requests[0].lower()


async def test_send__rebinding_name_refused(server: _Server, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    from offload.outbound.http import build_client, send

    _fake_getaddrinfo(monkeypatch, {"rebind.test": ["93.184.216.34", "127.0.0.1"]})
    async with build_client(policy=AddressPolicy()) as client:
        with pytest.raises(AddressRefusedError, match="rebind.test resolves to 127.0.0.1"):
            await send(client, "GET", f"http://rebind.test:{server.port}/", headers={},
                       content=None, timeout_s=5)
    assert server.requests == []


async def test_send__dns_failure_is_outbound_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from offload.outbound.http import build_client, send

    _fake_getaddrinfo(monkeypatch, {})
    async with build_client(policy=AddressPolicy()) as client:
        with pytest.raises(OutboundError, match="ConnectError: cannot resolve") as info:
            await send(client, "GET", "http://nowhere.test/?token=secret", headers={},
                       content=None, timeout_s=5)
    assert not isinstance(info.value, AddressRefusedError)
    assert "secret" not in str(info.value)


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest", "http://[::1]:9/",
                                 "http://[::ffff:127.0.0.1]:9/", "ftp://example.com/"])
async def test_send__literal_ip_and_scheme_checked_without_dns(url: str) -> None:
    from offload.outbound.http import build_client, send

    async with build_client(policy=AddressPolicy()) as client:
        with pytest.raises(AddressRefusedError):
            await send(client, "GET", url, headers={}, content=None, timeout_s=5)


async def test_send__non_canonical_ipv4_never_dialled() -> None:
    from offload.outbound.http import build_client, send

    async with build_client(policy=AddressPolicy()) as client:
        for url in ("http://2130706433/", "http://127.1/", "http://0x7f.0.0.1/"):
            with pytest.raises(OutboundError):
                await send(client, "GET", url, headers={}, content=None, timeout_s=5)

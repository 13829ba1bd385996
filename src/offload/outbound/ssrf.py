"""The SSRF guard: which addresses offload may connect to, and a DNS-pinned transport.

An address is allowed only if it is globally routable and every IPv4 address it
embeds (IPv4-mapped, 6to4, Teredo, NAT64 ``64:ff9b::/96``) is too. Loopback and the
private ranges (RFC 1918, ULA ``fc00::/7``, CGNAT ``100.64.0.0/10``) can be opened
by flags; link-local (cloud metadata ``169.254.169.254``), unspecified, multicast
and reserved addresses only by an explicit allow-list entry.

:class:`GuardedTransport` resolves each new connection's host once, checks every
address, then dials one of the checked addresses itself. The hostname stays in the
URL, so ``Host``, TLS SNI, certificate checks and connection pooling are unchanged,
and a DNS answer that changes between check and connect (rebinding) cannot matter.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import typing
from collections.abc import AsyncIterator, Iterable, Sequence
from urllib.parse import urlsplit

import httpcore
import httpx
import idna
from aiohttp.abc import AbstractResolver, ResolveResult

from offload.errors import AddressRefusedError, OutboundError, ValidationError

__all__ = ["AddressPolicy", "GuardedResolver", "GuardedTransport", "numeric_host", "parse_ip",
           "validate_url"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_PRIVATE_NETS: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("172.16.0.0/12"),
    ipaddress.ip_network("192.168.0.0/16"),
    ipaddress.ip_network("100.64.0.0/10"),  # CGNAT; `is_private` misses it
    ipaddress.ip_network("fc00::/7"),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_MAX_URL_LENGTH = 8192


def parse_ip(text: str) -> IPAddress | None:
    """``text`` as an IP address (brackets allowed), or None if it is a name."""
    text = text.strip("[]")
    if not text or not (text[0].isdigit() or ":" in text):
        return None  # a host name: skip the (slow) ipaddress parse
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


_parse_ip = parse_ip


def _numeric_part(text: str) -> int | None:
    """One part of a numeric host: decimal, ``0x`` hex or ``0``-led octal (inet_aton)."""
    try:
        if text[:2].lower() == "0x":
            return int(text[2:], 16)  # "0x" alone is not a number to the resolver
        if len(text) > 1 and text[0] == "0":
            return int(text[1:], 8)
        return int(text, 10) if text.isdigit() else None
    except ValueError:
        return None


def numeric_host(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a numeric host form stands for, as the system resolver reads it.

    ``2130706433``, ``0x7f000001``, ``017700000001``, ``127.1`` and ``0x7f.0.0.1`` are
    all 127.0.0.1 to ``getaddrinfo``; None if ``host`` is not such a form.
    """
    parts = host.rstrip(".").split(".")
    if not 1 <= len(parts) <= 4 or not all(parts):
        return None
    values = [_numeric_part(p) for p in parts]
    if any(v is None for v in values):
        return None
    *head, last = typing.cast(list[int], values)
    if any(v > 255 for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    number = 0
    for v in head:
        number = number << 8 | v
    return ipaddress.IPv4Address(number << (8 * (4 - len(head))) | last)


def _tunnelled_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses carried inside a 6to4 or Teredo address."""
    found: list[ipaddress.IPv4Address] = []
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def _normalise_host(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


class AddressPolicy:
    """Decides whether offload may connect to an address.

    Args:
        allow_loopback: allow ``127.0.0.0/8`` and ``::1`` (``offload dev`` turns this on).
        allow_private: allow RFC 1918, ULA and CGNAT ranges (an engine inside a private
            network calling its neighbours). Never opens link-local or metadata addresses.
        allow_list: CIDRs (``10.1.0.0/16``) or hostnames (``api.internal``,
            ``.internal`` for a domain and its subdomains) always allowed.
    """

    def __init__(
        self,
        *,
        allow_loopback: bool = False,
        allow_private: bool = False,
        allow_list: Sequence[str] = (),
    ) -> None:
        self.allow_loopback = allow_loopback
        self.allow_private = allow_private
        networks: list[IPNetwork] = []
        hosts: list[str] = []
        for entry in allow_list:
            text = entry.strip()
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                hosts.append(_normalise_host(text.removeprefix("*")))
        self._networks = tuple(networks)
        self._hosts = tuple(hosts)

    def __repr__(self) -> str:
        return (
            f"AddressPolicy(allow_loopback={self.allow_loopback}, "
            f"allow_private={self.allow_private}, "
            f"allow_list={[str(n) for n in self._networks] + list(self._hosts)})"
        )

    def host_allowed(self, host: str) -> bool:
        """True if ``host`` is allow-listed by name (its addresses are then not checked)."""
        name = _normalise_host(host)
        for entry in self._hosts:
            if entry.startswith("."):
                if name == entry[1:] or name.endswith(entry):
                    return True
            elif name == entry:
                return True
        return False

    def _listed(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self._networks)

    def _refusal(self, ip: IPAddress) -> str | None:
        """Why ``ip`` is refused, or None if it is allowed."""
        if self._listed(ip):
            return None
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                return self._refusal(ip.ipv4_mapped)
            if ip in _NAT64:  # reaches whatever IPv4 address it embeds; public only
                inner = ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
                if inner.is_global or self._listed(inner):
                    return None
                return f"it embeds the non-public IPv4 address {inner}"
            for inner in _tunnelled_ipv4(ip):
                if not inner.is_global and not self._listed(inner):
                    return f"it embeds the non-public IPv4 address {inner}"
            if ip.is_site_local:
                return "deprecated site-local address"
        if ip.is_loopback:
            return None if self.allow_loopback else "loopback address"
        if any(ip.version == net.version and ip in net for net in _PRIVATE_NETS):
            return None if self.allow_private else "private address"
        if ip.is_link_local:
            return "link-local address (includes cloud metadata endpoints)"
        if ip.is_unspecified:
            return "unspecified address"
        if ip.is_multicast:
            return "multicast address"
        if ip.is_reserved or not ip.is_global:  # IPv6 is_global misses ::/8 and more
            return "reserved or non-public address"
        return None

    def check_ip(self, ip: str) -> None:
        """Raise :class:`AddressRefusedError` unless offload may connect to ``ip``."""
        parsed = _parse_ip(ip)
        if parsed is None:
            raise AddressRefusedError(f"refused to connect to {ip!r}: not an IP address")
        reason = self._refusal(parsed)
        if reason is not None:
            raise AddressRefusedError(f"refused to connect to {parsed}: {reason}")

    def check_url(self, url: str) -> None:
        """Raise :class:`AddressRefusedError` now for a URL the guard would refuse when
        called: a literal or numeric-form IP address (``http://2130706433/``) or a
        ``localhost`` name that the policy refuses, with the guard's own reason. Other
        names are resolved, and checked, only at call time."""
        host = urlsplit(url).hostname or ""
        if not host or self.host_allowed(host):
            return
        literal = _parse_ip(host)
        if literal is not None:
            self.check_ip(str(literal))
            return
        name = _normalise_host(host)
        standing = numeric_host(name)
        if standing is None and name == "localhost":
            standing = ipaddress.IPv4Address("127.0.0.1")  # RFC 6761: always loopback
        if standing is not None:
            try:
                self.check_ip(str(standing))
            except AddressRefusedError as err:
                raise AddressRefusedError(f"{name} resolves to {standing}: {err}") from None

    async def resolve_and_check(self, host: str, port: int) -> list[str]:
        """Resolve ``host`` and check every address; return them, in resolver order.

        A literal IP is checked without DNS. One refused address refuses the host.
        Raises :class:`AddressRefusedError`, or :class:`OutboundError` if DNS fails.
        """
        literal = _parse_ip(host)
        if literal is not None:
            self.check_ip(str(literal))
            return [str(literal)]
        name = _normalise_host(host)
        if not name:
            raise AddressRefusedError("refused to connect: empty host name")
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                name, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except (OSError, UnicodeError) as err:
            raise OutboundError(f"cannot resolve host {name!r}: {err}") from err
        ips: list[str] = []
        for family, _type, _proto, _canon, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            ip = str(sockaddr[0]).split("%", 1)[0]
            if ip not in ips:
                ips.append(ip)
        if not ips:
            raise OutboundError(f"cannot resolve host {name!r}: no addresses")
        if not self.host_allowed(name):
            for ip in ips:
                try:
                    self.check_ip(ip)
                except AddressRefusedError as err:
                    raise AddressRefusedError(f"{name} resolves to {ip}: {err}") from None
        return ips


def validate_url(url: str) -> None:
    """Raise ``ValidationError("url", ...)`` unless ``url`` is an acceptable target.

    Acceptable: absolute ``http``/``https`` with a host, no user name or password,
    a valid port, no whitespace or control characters. Addresses are checked later,
    at connect time, by the guard.
    """
    if not isinstance(url, str) or not url:
        raise ValidationError("url", "must be a non-empty string", "required")
    if len(url) > _MAX_URL_LENGTH:
        raise ValidationError("url", f"longer than {_MAX_URL_LENGTH} characters", "too_long")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ValidationError("url", "contains whitespace or control characters", "invalid_url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise ValidationError("url", f"malformed URL: {err}", "invalid_url") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValidationError("url", "scheme must be http or https", "invalid_scheme")
    if "@" in parts.netloc:
        raise ValidationError("url", "must not contain a user name or password", "userinfo")
    if not parts.hostname:
        raise ValidationError("url", "must include a host", "missing_host")
    if port == 0:
        raise ValidationError("url", "port must be between 1 and 65535", "invalid_port")
    host = parts.hostname
    if "[" in parts.netloc:
        if parse_ip(host) is None:
            raise ValidationError("url", "malformed URL: invalid IPv6 address", "invalid_url")
    elif not host.isascii():
        try:  # what httpx (the previous parser) accepts: IDNA 2008
            idna.encode(host.lower())
        except (idna.IDNAError, UnicodeError, ValueError):
            raise ValidationError("url", "malformed URL: invalid internationalised host name",
                                  "invalid_url") from None


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that returns only addresses the policy allows.

    aiohttp dials exactly the addresses returned here (the host name stays in the
    URL for ``Host``, SNI and certificate checks), so the check and the connection
    see the same DNS answer. aiohttp does not call a resolver for literal IP hosts:
    :func:`offload.outbound.http.send` checks those itself.
    Raises :class:`AddressRefusedError`; DNS failures surface as ``OSError`` (which
    aiohttp reports as a connector error).
    """

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            ips = await self._policy.resolve_and_check(host, port)
        except AddressRefusedError:
            raise
        except OutboundError as err:
            raise OSError(str(err)) from None
        return [
            {"hostname": host, "host": ip, "port": port,
             "family": socket.AF_INET6 if ":" in ip else socket.AF_INET,
             "proto": socket.IPPROTO_TCP, "flags": socket.AI_NUMERICHOST}
            for ip in ips
        ]

    async def close(self) -> None:
        return None


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Network backend that dials only addresses the policy has checked."""

    def __init__(self, policy: AddressPolicy, inner: httpcore.AsyncNetworkBackend) -> None:
        self._policy = policy
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                ips = await self._policy.resolve_and_check(host, port)
        except TimeoutError as err:
            raise httpcore.ConnectTimeout(f"resolving {host!r} timed out") from err
        except AddressRefusedError:
            raise
        except OutboundError as err:
            raise httpcore.ConnectError(str(err)) from err
        last: Exception | None = None
        for ip in ips:
            try:
                return await self._inner.connect_tcp(
                    ip,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as err:
                last = err
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefusedError("refused to connect to a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


# httpcore exception → httpx exception, most specific first (as httpx maps them).
_EXCEPTIONS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


def _to_httpx(err: Exception) -> Exception:
    for core_type, httpx_type in _EXCEPTIONS:
        if isinstance(err, core_type):
            return httpx_type(str(err))
    return err


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: typing.AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except Exception as err:
            mapped = _to_httpx(err)
            if mapped is err:
                raise
            raise mapped from err

    async def aclose(self) -> None:
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()


class GuardedTransport(httpx.AsyncBaseTransport):
    """httpx transport that refuses, per new connection, addresses the policy forbids.

    Raises :class:`AddressRefusedError` (not an httpx error) when the guard refuses;
    network failures surface as the usual ``httpx.TransportError`` subclasses.
    Never uses proxies or ``.netrc``; HTTP/1.1 only.
    """

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        limits: httpx.Limits | None = None,
        verify: ssl.SSLContext | bool = True,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.policy = policy
        limits = limits or httpx.Limits(max_connections=256, max_keepalive_connections=64)
        if isinstance(verify, ssl.SSLContext):
            ssl_context = verify
        else:
            ssl_context = httpx.create_ssl_context(verify=verify)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=_GuardedBackend(policy, network_backend or httpcore.AnyIOBackend()),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; literal-IP hosts and resolved names are checked on connect."""
        scheme = request.url.scheme
        if scheme not in ("http", "https"):
            raise AddressRefusedError(f"refused scheme {scheme!r}: only http and https")
        literal = _parse_ip(request.url.host)
        if literal is not None:
            self.policy.check_ip(str(literal))  # fail fast, even on a pooled connection
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            response = await self._pool.handle_async_request(core_request)
        except Exception as err:
            mapped = _to_httpx(err)
            if mapped is err:
                raise
            raise mapped from err
        assert isinstance(response.stream, typing.AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()

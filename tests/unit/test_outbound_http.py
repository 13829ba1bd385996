"""outbound.http.send against a real HTTP/1.1 server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import pytest

from offload.errors import AddressRefusedError, OutboundError
from offload.outbound.http import OutboundClient, OutboundResponse, build_client, send
from offload.outbound.ssrf import AddressPolicy


class _App:
    """A tiny HTTP/1.1 server; every response closes the connection."""

    def __init__(self) -> None:
        self.port = 0
        self.hits: list[tuple[str, str]] = []
        self._server: asyncio.Server | None = None
        self._closing = asyncio.Event()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        except asyncio.IncompleteReadError:
            writer.close()
            return
        request_line, *header_lines = head.split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        parts = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.hits.append((method, parts.path))
        try:
            await self._route(writer, method, parts.path, query, headers, body)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    @staticmethod
    def _respond(
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> None:
        lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    async def _route(
        self,
        writer: asyncio.StreamWriter,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        if path == "/echo":
            payload = {"method": method, "body": body.decode(), "headers": headers}
            self._respond(writer, 200, json.dumps(payload).encode(), {"X-Echo": "Yes"})
        elif path.startswith("/redirect/"):
            status = int(path.rsplit("/", 1)[1])
            self._respond(writer, status, b"moved", {"Location": query.get("to", "/echo")})
        elif path == "/loop":
            self._respond(writer, 307, b"", {"Location": "/loop"})
        elif path == "/big":
            self._respond(writer, 200, b"x" * 100_000)
        elif path == "/endless":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"y" * 8192
            for _ in range(10_000):
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
        elif path == "/slow":  # answers only when the test is over: always too late
            await self._closing.wait()
            self._respond(writer, 200, b"late")
        elif path == "/status":
            self._respond(writer, int(query["code"]), b"", {"Retry-After": "7"})
        else:
            self._respond(writer, 404, b"not found")
        await writer.drain()

    async def __aenter__(self) -> _App:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._closing.set()
        self._server.close()


@pytest.fixture
async def app() -> AsyncIterator[_App]:
    async with _App() as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[OutboundClient]:
    c = build_client(policy=AddressPolicy(allow_loopback=True), timeout_s=5, connect_timeout_s=2)
    async with c:
        yield c


async def _send(client: OutboundClient, method: str, url: str, **kw: object) -> OutboundResponse:
    kw.setdefault("headers", {})
    kw.setdefault("content", None)
    kw.setdefault("timeout_s", 5.0)
    return await send(client, method, url, **kw)  # type: ignore[arg-type]


async def test_send__plain_post(app: _App, client: OutboundClient) -> None:
    r = await _send(client, "POST", f"{app.base}/echo", headers={"X-Key": "v"}, content=b'{"a":1}')
    assert r.status == 200
    assert r.redirects == 0 and not r.truncated and r.elapsed_ms > 0
    assert r.headers["x-echo"] == "Yes"
    echoed = json.loads(r.body)
    assert echoed["method"] == "POST"
    assert echoed["body"] == '{"a":1}'
    assert echoed["headers"]["x-key"] == "v"
    assert echoed["headers"]["user-agent"] == "offload"


@pytest.mark.parametrize("status", [307, 308])
async def test_send__307_308_keep_method_and_body(
    app: _App, client: OutboundClient, status: int
) -> None:
    r = await _send(client, "POST", f"{app.base}/redirect/{status}", content=b"payload")
    assert r.status == 200
    assert r.redirects == 1
    echoed = json.loads(r.body)
    assert (echoed["method"], echoed["body"]) == ("POST", "payload")
    assert app.hits == [("POST", f"/redirect/{status}"), ("POST", "/echo")]


@pytest.mark.parametrize("status", [301, 302, 303])
async def test_send__301_302_303_on_post_not_followed(
    app: _App, client: OutboundClient, status: int
) -> None:
    r = await _send(client, "POST", f"{app.base}/redirect/{status}", content=b"payload")
    assert r.status == status
    assert r.redirects == 0
    assert r.headers["location"] == "/echo"
    assert app.hits == [("POST", f"/redirect/{status}")]  # never turned into a GET


async def test_send__302_on_get_followed(app: _App, client: OutboundClient) -> None:
    r = await _send(client, "GET", f"{app.base}/redirect/302")
    assert r.status == 200 and r.redirects == 1
    assert json.loads(r.body)["method"] == "GET"


async def test_send__too_many_redirects_returns_last_3xx(
    app: _App, client: OutboundClient
) -> None:
    r = await _send(client, "POST", f"{app.base}/loop", content=b"x", max_redirects=3)
    assert r.status == 307
    assert r.redirects == 3
    assert len(app.hits) == 4


async def test_send__redirect_to_metadata_refused(app: _App, client: OutboundClient) -> None:
    url = f"{app.base}/redirect/307?to=http://169.254.169.254/latest/meta-data/"
    with pytest.raises(AddressRefusedError, match="169.254.169.254"):
        await _send(client, "POST", url, content=b"x")


async def test_send__redirect_to_non_http_scheme_not_followed(
    app: _App, client: OutboundClient
) -> None:
    r = await _send(client, "POST", f"{app.base}/redirect/307?to=file:///etc/passwd")
    assert r.status == 307 and r.redirects == 0


async def test_send__cross_origin_redirect_drops_authorization(
    app: _App, client: OutboundClient
) -> None:
    other = f"http://localhost:{app.port}/echo"  # same server, different origin
    r = await _send(
        client,
        "POST",
        f"{app.base}/redirect/307?to={other}",
        headers={"Authorization": "Bearer s3cret", "X-Other": "kept"},
        content=b"x",
    )
    echoed = json.loads(r.body)
    assert "authorization" not in echoed["headers"]
    assert echoed["headers"]["x-other"] == "kept"


async def test_send__same_origin_redirect_keeps_authorization(
    app: _App, client: OutboundClient
) -> None:
    r = await _send(
        client,
        "POST",
        f"{app.base}/redirect/308",
        headers={"Authorization": "Bearer s3cret"},
        content=b"x",
    )
    assert json.loads(r.body)["headers"]["authorization"] == "Bearer s3cret"


async def test_send__response_cap_truncates(app: _App, client: OutboundClient) -> None:
    r = await _send(client, "GET", f"{app.base}/big", max_response_bytes=1000)
    assert r.truncated
    assert r.body == b"x" * 1000
    full = await _send(client, "GET", f"{app.base}/big", max_response_bytes=100_000)
    assert not full.truncated and len(full.body) == 100_000


async def test_send__endless_body_stops_at_cap(app: _App, client: OutboundClient) -> None:
    r = await _send(client, "GET", f"{app.base}/endless", max_response_bytes=50_000)
    assert r.truncated and len(r.body) == 50_000


async def test_send__timeout_raises_outbound_error(app: _App, client: OutboundClient) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(OutboundError, match="timed out"):
        await _send(client, "POST", f"{app.base}/slow", content=b"x", timeout_s=0.3)
    assert loop.time() - started < 2


async def test_send__connection_refused_raises_outbound_error(
    client: OutboundClient,
) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(OutboundError, match="ConnectError") as info:
        await _send(client, "GET", f"http://127.0.0.1:{port}/")
    assert not isinstance(info.value, AddressRefusedError)


async def test_send__guard_refusal_is_address_refused(app: _App) -> None:
    async with build_client(policy=AddressPolicy()) as strict:
        with pytest.raises(AddressRefusedError):
            await _send(strict, "GET", f"{app.base}/echo")
    assert app.hits == []


async def test_send__errors_never_quote_header_values_or_query(
    client: OutboundClient,
) -> None:
    with pytest.raises(OutboundError) as info:
        await _send(
            client,
            "POST",
            "http://127.0.0.1:1/hook?token=querysecret",
            headers={"Authorization": "Bearer headersecret"},
            content=b"x",
        )
    text = str(info.value)
    assert "headersecret" not in text and "querysecret" not in text
    assert "127.0.0.1:1/hook" in text
    with pytest.raises(OutboundError) as bad:
        await _send(client, "GET", "http://127.0.0.1:1/", headers={"X": "bad\nvalue-secret"})
    assert "value-secret" not in str(bad.value)


async def test_send__other_statuses_returned(app: _App, client: OutboundClient) -> None:
    r = await _send(client, "POST", f"{app.base}/status?code=503", content=b"")
    assert r.status == 503
    assert r.headers["retry-after"] == "7"

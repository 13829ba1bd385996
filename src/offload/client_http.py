"""The client's HTTP/1.1 keep-alive transports (standard library only).

:class:`SyncTransport` pools :mod:`http.client` connections; :class:`AsyncTransport`
speaks HTTP/1.1 over asyncio streams with a small connection pool. Both were chosen
by measurement (bench/RESULTS.md, "Client transport"): each adds ~0.1 ms per call over
a hand-written raw request, against ~1 ms for httpx's async path.

Requests that fail while connecting are retried (nothing was sent); requests that
fail later are retried only when the caller says a repeat is harmless (a GET, or a
body carrying an idempotency key or an event id).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import select
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

_IDLE_MAX = 32
"""Idle keep-alive connections kept per client (more are closed after use)."""


class _ConnectFailed(Exception):
    """Connecting failed: nothing was sent, so any request may be retried."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class Endpoint:
    """Where requests go: scheme, host, port and path prefix of a base URL."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/")
        default = (self.tls and self.port == 443) or (not self.tls and self.port == 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if default else f"{host}:{self.port}"
        from offload import __version__  # the package imports this module first

        self.headers: dict[str, str] = {"User-Agent": f"offload-client/{__version__}"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        head = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        self._head = f"Host: {self.host_header}\r\n{head}".encode("latin-1")

    def target(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        """The request target for ``path`` (with the base path and a query string)."""
        query = f"?{urlencode(params)}" if params else ""
        return f"{self.prefix}{path}{query}"

    def request_bytes(self, method: str, target: str, body: bytes | None) -> bytes:
        """A whole HTTP/1.1 request."""
        if body is None:
            empty = b"" if method == "GET" else b"Content-Length: 0\r\n"
            return b"%s %s HTTP/1.1\r\n%s%s\r\n" % (method.encode(), target.encode(),
                                                      self._head, empty)
        return b"%s %s HTTP/1.1\r\n%sContent-Type: application/json\r\nContent-Length: %d" \
               b"\r\n\r\n%s" % (method.encode(), target.encode(), self._head, len(body), body)


def backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, …): 0.1 s doubling, at most 2 s."""
    return float(min(2.0, 0.1 * 2 ** (attempt - 1)))


class SyncTransportProtocol(Protocol):
    def request(self, method: str, target: str, body: bytes | None, *, timeout: float,
                safe: bool) -> tuple[int, bytes]: ...

    def close(self) -> None: ...


class AsyncTransportProtocol(Protocol):
    async def request(self, method: str, target: str, body: bytes | None, *, timeout: float,
                      safe: bool) -> tuple[int, bytes]: ...

    async def close(self) -> None: ...


class SyncTransport:
    """A thread-safe pool of keep-alive :class:`http.client.HTTPConnection` objects."""

    def __init__(self, endpoint: Endpoint, *, timeout: float, retries: int) -> None:
        self._endpoint = endpoint
        self._timeout = timeout
        self._retries = retries
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._context = ssl.create_default_context() if endpoint.tls else None

    def _checkout(self, timeout: float) -> http.client.HTTPConnection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                break
            sock = conn.sock
            # An idle connection the server closed (keep-alive timeout) reads as ready:
            # drop it rather than send into it.
            if sock is not None and not select.select([sock], [], [], 0)[0]:
                sock.settimeout(timeout)
                return conn
            conn.close()
        ep = self._endpoint
        if self._context is not None:
            conn = http.client.HTTPSConnection(ep.host, ep.port, timeout=timeout,
                                               context=self._context)
        else:
            conn = http.client.HTTPConnection(ep.host, ep.port, timeout=timeout)
        try:
            conn.connect()
        except OSError as exc:
            conn.close()
            raise _ConnectFailed(exc) from exc
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _checkin(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < _IDLE_MAX:
                self._idle.append(conn)
                return
        conn.close()

    def _once(self, method: str, target: str, body: bytes | None,
              timeout: float) -> tuple[int, bytes]:
        conn = self._checkout(timeout)
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", self._endpoint.host_header)
            for name, value in self._endpoint.headers.items():
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Type", "application/json")
                conn.putheader("Content-Length", str(len(body)))
            elif method != "GET":
                conn.putheader("Content-Length", "0")
            conn.endheaders(body)
            response = conn.getresponse()
            data = response.read()
        except BaseException:
            conn.close()
            raise
        if response.will_close:
            conn.close()
        else:
            self._checkin(conn)
        return response.status, data

    def request(self, method: str, target: str, body: bytes | None, *, timeout: float,
                safe: bool) -> tuple[int, bytes]:
        """Status and body of the answer; retries as the module docstring says."""
        attempt = 0
        while True:
            try:
                return self._once(method, target, body, timeout)
            except _ConnectFailed as exc:
                error: BaseException = exc.cause
            except (OSError, http.client.HTTPException) as exc:
                if not safe:
                    raise
                error = exc
            attempt += 1
            if attempt > self._retries:
                raise error
            time.sleep(backoff(attempt))

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class _Conn:
    """One asyncio keep-alive connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body, and whether the connection can be reused."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    status = int(rest[:3])
    length = -1
    chunked = False
    keep = version == b"HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            token = value.strip().lower()
            keep = token != b"close" and (keep or token == b"keep-alive")
    if chunked:
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                return status, b"".join(parts), keep
            parts.append((await reader.readexactly(size + 2))[:-2])
    if length >= 0 or status in (204, 304) or 100 <= status < 200:
        return status, (await reader.readexactly(length) if length > 0 else b""), keep
    return status, await reader.read(), False  # delimited by the connection's end


class AsyncTransport:
    """HTTP/1.1 keep-alive over asyncio streams; one request per connection at a time."""

    def __init__(self, endpoint: Endpoint, *, timeout: float, retries: int,
                 max_connections: int = 100) -> None:
        self._endpoint = endpoint
        self._timeout = timeout
        self._retries = retries
        self._idle: list[_Conn] = []
        self._max = max_connections
        self._slots: asyncio.Semaphore | None = None
        self._context = ssl.create_default_context() if endpoint.tls else None

    async def _connect(self) -> _Conn:
        ep = self._endpoint
        try:
            reader, writer = await asyncio.open_connection(
                ep.host, ep.port, ssl=self._context,
                server_hostname=ep.host if self._context else None)
        except OSError as exc:
            raise _ConnectFailed(exc) from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Conn(reader, writer)

    async def _once(self, data: bytes, timeout: float) -> tuple[int, bytes]:
        conn = None
        while self._idle:
            candidate = self._idle.pop()
            if candidate.usable():
                conn = candidate
                break
            candidate.close()
        try:
            async with asyncio.timeout(timeout):
                if conn is None:
                    conn = await self._connect()
                conn.writer.write(data)
                status, body, keep = await _read_response(conn.reader)
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        if keep and len(self._idle) < _IDLE_MAX:
            self._idle.append(conn)
        else:
            conn.close()
        return status, body

    async def request(self, method: str, target: str, body: bytes | None, *, timeout: float,
                      safe: bool) -> tuple[int, bytes]:
        """Status and body of the answer; retries as the module docstring says."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max)
        data = self._endpoint.request_bytes(method, target, body)
        attempt = 0
        while True:
            try:
                async with self._slots:
                    return await self._once(data, timeout)
            except _ConnectFailed as exc:
                error: BaseException = exc.cause
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    ValueError) as exc:
                if not safe:
                    raise _as_os_error(exc) from exc
                error = exc
            attempt += 1
            if attempt > self._retries:
                raise _as_os_error(error)
            await asyncio.sleep(backoff(attempt))

    async def close(self) -> None:
        """Close every idle connection."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            with contextlib.suppress(OSError):
                await conn.writer.wait_closed()


def _as_os_error(exc: BaseException) -> BaseException:
    """A torn or unparseable answer as the ConnectionError the blocking client raises."""
    if isinstance(exc, OSError):
        return exc
    return ConnectionError(f"the connection broke mid-answer: {exc!r}")

"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for load generation.

httpx spends ~150 µs of CPU per request; on a 2-core machine that the engine
shares with its load generator, that would measure the client, not the server.
This client writes pre-built request bytes and parses only the status line and
the framing headers, so its cost per request is a few tens of microseconds.
"""

from __future__ import annotations

import asyncio
import socket


class RawConn:
    """One keep-alive connection. Not safe for concurrent use: one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._host_header = f"{host}:{port}".encode()

    async def connect(self) -> RawConn:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self

    def build(self, method: str, path: str, body: bytes = b"") -> bytes:
        """Request bytes; build once and send many times when the body is constant."""
        head = (b"%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % (method.encode(), path.encode(),
                                                   self._host_header, len(body)))
        return head + body

    async def send_raw(self, request: bytes) -> tuple[int, bytes]:
        """Send pre-built request bytes; the status and body of the answer."""
        assert self.reader is not None and self.writer is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = -1
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            parts = []
            while True:
                size_line = await self.reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                data = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(data[:-2])
            return status, b"".join(parts)
        if length < 0:
            raise RuntimeError("response without Content-Length")
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        return await self.send_raw(self.build(method, path, body))

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
            self.writer = None


def install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

"""A loopback TCP proxy in front of PostgreSQL that counts round trips on the wire.

A client waits for the server once per ``Sync`` (extended protocol: one or more
Parse/Bind/Execute, then Sync) and once per simple ``Query``; counting those two
client messages counts round trips, whatever the driver does above them (BEGIN and
COMMIT included). Use a URL with ``sslmode=disable`` so the stream is readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from urllib.parse import urlsplit, urlunsplit


class RoundTripCounter:
    """Forwards 127.0.0.1:<port> to the server of ``url``; ``round_trips`` counts as it goes."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        sep = "&" if parts.query else ""
        self.url = urlunsplit((parts.scheme, f"{netloc[0]}@{host}" if len(netloc) == 2
                               else host, parts.path,
                               f"{parts.query}{sep}sslmode=disable&gssencmode=disable", ""))
        """The URL to give the client: the same database, through this proxy."""
        self.round_trips = 0
        self.statements = 0
        """Execute and Query messages (statements sent, pipelined or not)."""
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> RoundTripCounter:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return

        async def client_to_server() -> None:
            with contextlib.suppress(Exception):
                head = await reader.readexactly(4)  # the startup message has no type byte
                (size,) = struct.unpack("!i", head)
                up_writer.write(head + await reader.readexactly(size - 4))
                while True:
                    kind = await reader.readexactly(1)
                    head = await reader.readexactly(4)
                    (size,) = struct.unpack("!i", head)
                    body = await reader.readexactly(size - 4)
                    if kind in (b"S", b"Q"):
                        self.round_trips += 1
                    if kind in (b"E", b"Q"):
                        self.statements += 1
                    up_writer.write(kind + head + body)
                    if kind in (b"S", b"Q", b"X", b"H"):
                        await up_writer.drain()
            with contextlib.suppress(Exception):
                up_writer.close()

        async def server_to_client() -> None:
            with contextlib.suppress(Exception):
                while data := await up_reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            with contextlib.suppress(Exception):
                writer.close()

        await asyncio.gather(client_to_server(), server_to_client())

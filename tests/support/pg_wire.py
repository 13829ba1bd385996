"""A loopback TCP proxy in front of PostgreSQL that counts round trips on the wire.

A client waits for the server once per ``Sync`` (extended protocol: one or more
Parse/Bind/Execute, then Sync) and once per simple ``Query``; counting those two
client messages counts round trips, whatever the driver does above them (BEGIN and
COMMIT included). Use a URL with ``sslmode=disable`` so the stream is readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from urllib.parse import urlsplit, urlunsplit

from tests.support.proxy import ChaosProxy


class RoundTripCounter(ChaosProxy):
    """Forwards 127.0.0.1:<port> to the server of ``url``; ``round_trips`` counts as it goes."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        super().__init__(parts.hostname or "127.0.0.1", parts.port or 5432)
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

    def start(self) -> RoundTripCounter:
        super().start()
        return self

    async def forward_up(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """Forward the client's messages one by one, counting Sync/Query (round trips)."""
        with contextlib.suppress(Exception):
            head = await src.readexactly(4)  # the startup message has no type byte
            (size,) = struct.unpack("!i", head)
            dst.write(head + await src.readexactly(size - 4))
            while True:
                kind = await src.readexactly(1)
                head = await src.readexactly(4)
                (size,) = struct.unpack("!i", head)
                body = await src.readexactly(size - 4)
                if kind in (b"S", b"Q"):
                    self.round_trips += 1
                if kind in (b"E", b"Q"):
                    self.statements += 1
                dst.write(kind + head + body)
                if kind in (b"S", b"Q", b"X", b"H"):
                    await dst.drain()
        with contextlib.suppress(Exception):
            dst.close()

"""Wake-ups between the processes of one machine: unix datagrams, lost without harm.

Two kinds, both used by ``offload serve --workers N`` (:mod:`offload.workers`):

* **Work committed** (SQLite): a process that claims nothing (an API front) tells the one
  claiming from the file, on an abstract socket named after the file
  (:func:`work_address`; the SQLite counterpart of PostgreSQL's ``NOTIFY``). Used by
  :mod:`offload.store.sqlite`.
* **Run ended**: whichever process ends a run tells every API front, each listening on
  ``<dir>/front-<pid>.sock`` in the directory the ``serve`` parent names in
  :data:`DIR_ENV` (:class:`RunEnds`), so a ``/v1/runs/{id}/wait`` on a front answers at
  once instead of at its next poll. Both stores (the processes share one machine).

A datagram no one reads (no listener, dead process, full queue) is dropped: every
receiver also looks by itself (the scheduler's idle look, ``/wait``'s 0.5 s poll).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("offload.wakes")

DIR_ENV = "OFFLOAD_WAKE_DIR"
"""Set by the ``serve --workers`` parent for its children: where the fronts listen."""
_FRONT_PREFIX = "front-"
_SUFFIX = ".sock"
_RELIST_S = 1.0
"""How often the sender lists the directory again (fronts start with the engine)."""


def work_address(path: Path) -> bytes:
    """The abstract unix socket where the process claiming work from ``path`` hears of it."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
    return b"\0offload-wake-" + digest.encode()


class Inbox:
    """A bound datagram socket read on an event loop: ``on_messages`` gets each batch."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop,
                 on_messages: Callable[[list[bytes]], None]) -> None:
        self._sock = sock
        self._loop = loop
        self._on_messages = on_messages
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._drain)

    @classmethod
    def bind(cls, address: str | bytes, loop: asyncio.AbstractEventLoop,
             on_messages: Callable[[list[bytes]], None]) -> Inbox:
        """Bind ``address`` (raises OSError if taken) and read it on ``loop``."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(address)
        except OSError:
            sock.close()
            raise
        return cls(sock, loop, on_messages)

    def _drain(self) -> None:
        messages: list[bytes] = []
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while True:
                messages.append(self._sock.recv(256))
        self._on_messages(messages)

    def close(self) -> None:
        """Stop reading and close the socket."""
        with contextlib.suppress(RuntimeError, ValueError):  # loop already closed
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()


class Outbox:
    """An unbound datagram socket that sends without blocking and never raises."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None

    def send(self, address: str | bytes, payload: bytes) -> bool:
        """Send one datagram; False if no one took it (no listener, dead, full)."""
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)
        try:
            self._sock.sendto(payload, address)
        except OSError:
            return False
        return True

    def close(self) -> None:
        """Close the socket (sending again opens a new one)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class RunEnds:
    """Run-end wake-ups among the processes of one ``serve --workers`` (see the module)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._own: Path | None = None
        self._inbox: Inbox | None = None
        self._out = Outbox()
        self._fronts: list[str] = []
        self._listed_at = -_RELIST_S

    @classmethod
    def from_env(cls) -> RunEnds | None:
        """The parent's directory, or None outside ``serve --workers``."""
        value = os.environ.get(DIR_ENV)
        return cls(Path(value)) if value else None

    def listen(self, loop: asyncio.AbstractEventLoop, on_end: Callable[[str], None]) -> None:
        """Hear of runs other processes end: ``on_end(run_id)`` on ``loop``."""
        if self._inbox is not None:
            return
        own = self.directory / f"{_FRONT_PREFIX}{os.getpid()}{_SUFFIX}"
        with contextlib.suppress(FileNotFoundError):
            own.unlink()  # a previous process with this pid

        def on_messages(messages: list[bytes]) -> None:
            for run_id in dict.fromkeys(messages):
                on_end(run_id.decode(errors="replace"))

        try:
            self._inbox = Inbox.bind(str(own), loop, on_messages)
        except OSError as exc:
            log.warning("cannot listen for run ends of other processes; /wait polls",
                        extra={"error": str(exc)})
            return
        self._own = own
        self._listed_at = -_RELIST_S  # list again, without this process

    def announce(self, run_id: str) -> None:
        """Tell every other listening process that ``run_id`` ended."""
        payload = run_id.encode()
        for path in self._listeners():
            self._out.send(path, payload)

    def _listeners(self) -> list[str]:
        """The other processes' sockets, listed again at most every ``_RELIST_S``."""
        at = time.monotonic()
        if at - self._listed_at >= _RELIST_S:
            self._listed_at = at
            own = str(self._own) if self._own is not None else None
            try:
                names = os.listdir(self.directory)
            except OSError:
                names = []
            self._fronts = [str(self.directory / n) for n in names
                            if n.startswith(_FRONT_PREFIX) and n.endswith(_SUFFIX)
                            and str(self.directory / n) != own]
        return self._fronts

    def close(self) -> None:
        """Stop listening and remove this process's socket."""
        if self._inbox is not None:
            self._inbox.close()
            self._inbox = None
        if self._own is not None:
            with contextlib.suppress(OSError):
                self._own.unlink()
            self._own = None
        self._out.close()

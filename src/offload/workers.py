"""``offload serve --workers N``: N engine processes behind one listening socket.

Each worker is a whole engine (HTTP API, scheduler, its own store connections), the
same as N engines on N machines sharing one PostgreSQL database: leases and fencing
keep them from running an item twice, and each takes its own node slot
(:mod:`offload.engine.identity`), so a restart takes back exactly the leases of the
processes it replaces. The kernel spreads connections over the workers, which accept
from the socket the parent opened.

SQLite keeps a single writer: a second process would wait on the database file's lock
(the busy handler sleeps milliseconds at a time), so ``--workers`` above 1 is refused
there.

The parent only supervises: SIGTERM or SIGINT is passed on to every worker (each
drains like a single engine); if a worker exits by itself the others are stopped and
the parent exits with its status, for the service manager to restart. Workers die
with the parent (``PR_SET_PDEATHSIG``), so ``kill -9`` of the parent is a crash of the
whole engine, as with one process.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

from offload.config import Settings

_PR_SET_PDEATHSIG = 1
_STOP_GRACE_S = 20.0

Serve = Callable[[Settings, "list[socket.socket] | None"], None]


def check_workers(workers: int, database_url: str) -> None:
    """Raise ValueError if ``workers`` cannot run on this store."""
    if workers < 1:
        raise ValueError("--workers must be at least 1")
    if workers > 1 and not database_url.startswith(("postgresql://", "postgres://")):
        raise ValueError("--workers above 1 needs PostgreSQL: SQLite has a single writer")


def listen(host: str, port: int) -> socket.socket:
    """The listening socket the workers share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _die_with_parent(parent: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the line above ran
        os._exit(1)


def _worker(serve: Serve, settings: Settings, sock: socket.socket, parent: int) -> None:
    _die_with_parent(parent)
    serve(settings, [sock])


def run(settings: Settings, workers: int, serve: Serve) -> int:
    """Run ``workers`` processes of ``serve`` on one socket; their exit status."""
    sock = listen(settings.host, settings.port)
    ctx = multiprocessing.get_context("spawn")
    procs: list[Any] = [
        ctx.Process(target=_worker, args=(serve, settings, sock, os.getpid()),
                    name=f"offload-worker-{i}")
        for i in range(workers)]
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for proc in procs:
            proc.start()
        sock.close()  # the workers hold it now
        status = 0
        alive = list(procs)
        while alive:
            for sentinel in wait([p.sentinel for p in alive]):
                proc = next(p for p in alive if p.sentinel == sentinel)
                proc.join()
                alive.remove(proc)
                if not stopping:  # a worker ended by itself: stop the others
                    status = proc.exitcode or 1
                    print(f"offload: worker {proc.name} exited with {proc.exitcode}; "
                          "stopping the others", file=sys.stderr, flush=True)
                    stop(signal.SIGTERM, None)
        return status
    finally:
        for proc in procs:
            proc.join(_STOP_GRACE_S)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

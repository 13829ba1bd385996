"""``offload serve --workers N``: API front processes beside executor processes.

With ``N`` above 1 the engine is split by role, so accepting work never waits behind
executing it: ``N - E`` *front* processes share the listening socket and answer the HTTP
API (ingest fast path included; no scheduler), and ``E`` *executor* processes
(``--executors``, default 1) claim and run the work and serve no HTTP. Every process
opens the store itself; a task or event is committed by the front that accepted it before
its 202, and the executors hear of it at once (PostgreSQL ``NOTIFY``; on SQLite a
datagram to the one process claiming from the file, see :mod:`offload.store.sqlite`).
On PostgreSQL more than one executor is the same as engines on several machines:
leases and fencing keep them from running an item twice and each takes its own node
slot (:mod:`offload.engine.identity`). SQLite has one executor (one claimer per file).

The parent makes a fresh temporary directory for the children (removed when it exits):
``metrics/`` holds their Prometheus values, so a scrape of any front answers the sums
over all processes (:func:`offload.metrics.share_across_processes`), and the fronts
listen there for the runs other processes end, so ``/v1/runs/{id}/wait`` on a front
answers at once (:class:`offload.wakes.RunEnds`).

The parent only supervises: SIGTERM or SIGINT is passed on to every child (each drains
like a single engine); if a child exits by itself the others are stopped and the parent
exits with its status, for the service manager to restart. Children die with the parent
(``PR_SET_PDEATHSIG``), so ``kill -9`` of the parent is a crash of the whole engine, as
with one process.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from offload import metrics, wakes
from offload.config import Settings

_PR_SET_PDEATHSIG = 1
_STOP_GRACE_S = 20.0

Serve = Callable[[Settings, "list[socket.socket] | None", bool], None]
"""Runs the HTTP API on the given sockets (``False``: without claiming work)."""
Execute = Callable[[Settings], None]
"""Runs an engine that claims and executes work and serves no HTTP."""


def default_workers() -> int:
    """The number of cores."""
    return max(1, os.cpu_count() or 1)


def check_workers(workers: int, executors: int, database_url: str) -> None:
    """Raise ValueError if this split cannot run on this store."""
    if workers < 1:
        raise ValueError("--workers must be at least 1")
    if executors < 1:
        raise ValueError("--executors must be at least 1")
    if workers > 1 and workers - executors < 1:
        raise ValueError("--workers must exceed --executors (one API process at least)")
    if executors > 1 and not database_url.startswith(("postgresql://", "postgres://")):
        raise ValueError("--executors above 1 needs PostgreSQL: one process claims work "
                         "from a SQLite file")


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


def _front(serve: Serve, settings: Settings, sock: socket.socket, parent: int) -> None:
    _die_with_parent(parent)
    serve(settings, [sock], False)


def _executor(execute: Execute, settings: Settings, parent: int) -> None:
    _die_with_parent(parent)
    execute(settings)


def run(settings: Settings, workers: int, serve: Serve, execute: Execute,
        executors: int = 1) -> int:
    """Run ``workers - executors`` API fronts on one socket and ``executors`` executors.

    Returns their exit status."""
    sock = listen(settings.host, settings.port)
    shared = Path(tempfile.mkdtemp(prefix="offload-serve-"))
    before = {k: os.environ.get(k) for k in (wakes.DIR_ENV, metrics.MULTIPROCESS_ENV)}
    os.environ[wakes.DIR_ENV] = str(shared)  # inherited by the children (spawn)
    metrics.share_across_processes(shared / "metrics")
    ctx = multiprocessing.get_context("spawn")
    parent = os.getpid()
    procs: list[Any] = [
        ctx.Process(target=_executor, args=(execute, settings, parent),
                    name=f"offload-executor-{i}")
        for i in range(executors)]
    procs += [
        ctx.Process(target=_front, args=(serve, settings, sock, parent),
                    name=f"offload-api-{i}")
        for i in range(workers - executors)]
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
        sock.close()  # the fronts hold it now
        status = 0
        alive = list(procs)
        while alive:
            for sentinel in wait([p.sentinel for p in alive]):
                proc = next(p for p in alive if p.sentinel == sentinel)
                proc.join()
                alive.remove(proc)
                if proc.pid is not None:
                    metrics.process_exited(proc.pid)
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
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(shared, ignore_errors=True)

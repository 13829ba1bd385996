"""offload beside the Python job queues people would pick instead, in one run.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/peers.py [--n 20000] [--rate-seconds 10] [--repeats 1]
                                    [--only offload-sqlite,huey,...] [--json out.json]

Systems, each with its library defaults: offload (``offload serve`` with an API key,
SQLite and PostgreSQL, driven through ``offload.AsyncClient``; the jobs are HTTP tasks
to bench/target.py, a no-op), Huey, Dramatiq and Celery on the local Redis
(127.0.0.1:6379, db 11, flushed), Procrastinate and PgQueuer on the local PostgreSQL
(a fresh database, dropped afterwards). A peer job is ``record(t)`` (bench/peers_common.py):
one pipelined Redis round trip that counts it and notes start − enqueue.

Workloads, per system (repeats interleaved; medians, ranges shown):

1. **enqueue, 1 call/job** — ``--n`` jobs, one library call each, one at a time, from
   this process, no worker running (offload: tasks delayed an hour); rate and call p50.
2. **bulk** — the library's bulk call in chunks of 1000 (none for Huey).
3. **end to end** — worker started (and warmed with one job), then ``--n`` jobs one
   call each; time from the first call until the last job has run.
4. **start − enqueue at 100/s** — jobs sent at 100/s for ``--rate-seconds``; each job's
   start time minus the time just before its enqueue call; p50 / p95 / p99.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "src"))

import peers_common  # noqa: E402
from rawhttp import RawConn  # noqa: E402

PY = sys.executable
BIN = Path(PY).parent
HOST = "127.0.0.1"
API_KEY = "ofk_admin_peers0123456789abcdef"
PG_ADMIN = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Proc:
    """A subprocess in its own process group (stopped as a group: workers fork)."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, cwd=BENCH, start_new_session=True,
                env=dict(os.environ, PYTHONPATH=str(BENCH), **(env or {})))

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()


def _redis() -> Any:
    return peers_common._redis()


class System:
    """One job queue. Subclasses fill in how to enqueue and how to run its worker."""

    name = ""
    has_bulk = True

    async def setup(self, logs: Path) -> None:
        _redis().flushdb()

    async def purge(self) -> None:
        _redis().flushdb()

    async def enqueue(self, t: float, k: int) -> None:
        raise NotImplementedError

    async def bulk(self, ts: list[float]) -> None:
        raise NotImplementedError

    def worker_argv(self) -> list[str]:
        raise NotImplementedError

    async def start_worker(self, logs: Path) -> None:
        self.worker = Proc(self.worker_argv(), logs / f"{self.name}-worker.log")

    async def stop_worker(self) -> None:
        self.worker.stop()

    async def done(self) -> int:
        return int(_redis().get(peers_common.DONE) or 0)

    async def latencies(self) -> list[float]:
        return [float(x) for x in _redis().lrange(peers_common.LAT, 0, -1)]

    async def reset_counts(self) -> None:
        _redis().delete(peers_common.DONE, peers_common.LAT)

    async def teardown(self) -> None:
        pass


class Huey(System):
    name = "Huey (Redis)"
    has_bulk = False

    async def setup(self, logs: Path) -> None:
        await super().setup(logs)
        import peers_huey

        self.task = peers_huey.noop

    async def enqueue(self, t: float, k: int) -> None:
        self.task(t)

    def worker_argv(self) -> list[str]:
        return [str(BIN / "huey_consumer"), "peers_huey.huey"]


class Dramatiq(System):
    name = "Dramatiq (Redis)"

    async def setup(self, logs: Path) -> None:
        await super().setup(logs)
        import peers_dramatiq

        self.actor = peers_dramatiq.noop
        self.broker = peers_dramatiq.broker

    async def enqueue(self, t: float, k: int) -> None:
        self.actor.send(t)

    async def bulk(self, ts: list[float]) -> None:
        import dramatiq

        dramatiq.group([self.actor.message(t) for t in ts]).run()

    def worker_argv(self) -> list[str]:
        return [str(BIN / "dramatiq"), "peers_dramatiq"]


class Celery(System):
    name = "Celery (Redis)"

    async def setup(self, logs: Path) -> None:
        await super().setup(logs)
        import peers_celery

        self.task = peers_celery.noop

    async def enqueue(self, t: float, k: int) -> None:
        self.task.delay(t)

    async def bulk(self, ts: list[float]) -> None:
        from celery import group

        group(self.task.s(t) for t in ts).apply_async()

    def worker_argv(self) -> list[str]:
        return [str(BIN / "celery"), "-A", "peers_celery", "worker", "--loglevel=warning"]


class Procrastinate(System):
    name = "Procrastinate (PostgreSQL)"

    async def setup(self, logs: Path) -> None:
        await super().setup(logs)
        import peers_procrastinate

        self.app = peers_procrastinate.app
        self.task = peers_procrastinate.noop
        await self.app.open_async()
        with contextlib.suppress(Exception):
            await self.app.schema_manager.apply_schema_async()

    async def purge(self) -> None:
        await super().purge()
        await self.app.connector.execute_query_async("DELETE FROM procrastinate_jobs")

    async def enqueue(self, t: float, k: int) -> None:
        await self.task.defer_async(t=t)

    async def bulk(self, ts: list[float]) -> None:
        await self.task.batch_defer_async(*({"t": t} for t in ts))

    def worker_argv(self) -> list[str]:
        return [str(BIN / "procrastinate"), "--app=peers_procrastinate.app", "worker"]

    async def teardown(self) -> None:
        await self.app.close_async()


class PgQueuer(System):
    name = "PgQueuer (PostgreSQL)"

    async def setup(self, logs: Path) -> None:
        await super().setup(logs)
        import psycopg
        from pgqueuer.db import PsycopgDriver
        from pgqueuer.queries import Queries

        out = subprocess.run([str(BIN / "pgq"), "--pg-dsn", peers_common.PG_URL, "install"],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0 and "already exists" not in out.stdout + out.stderr:
            raise RuntimeError(f"pgq install: {out.stdout[-500:]} {out.stderr[-500:]}")
        self.conn = await psycopg.AsyncConnection.connect(peers_common.PG_URL, autocommit=True)
        self.queries = Queries(PsycopgDriver(self.conn))

    async def purge(self) -> None:
        await super().purge()
        await self.conn.execute("DELETE FROM pgqueuer")

    async def enqueue(self, t: float, k: int) -> None:
        await self.queries.enqueue("noop", struct.pack("d", t))

    async def bulk(self, ts: list[float]) -> None:
        await self.queries.enqueue(["noop"] * len(ts), [struct.pack("d", t) for t in ts],
                                   [0] * len(ts))

    def worker_argv(self) -> list[str]:
        return [PY, str(BENCH / "peers_pgqueuer.py")]

    async def teardown(self) -> None:
        await self.conn.close()


class Offload(System):
    """``offload serve`` (API key) through ``offload.AsyncClient``; jobs are HTTP tasks
    to the no-op target, which records each arrival."""

    def __init__(self, store: str) -> None:
        self.store = store
        self.name = f"offload ({'SQLite' if store == 'sqlite' else 'PostgreSQL'})"

    async def setup(self, logs: Path) -> None:
        from offload import AsyncClient

        self.logs = logs
        tport = free_port()
        self.target = Proc([PY, str(BENCH / "target.py"), "--port", str(tport)],
                           logs / "target.log")
        self.target_port = tport
        self.target_url = f"http://{HOST}:{tport}/hit"
        await self._wait(tport, "/stats")
        await self._engine()
        self.client_cls = AsyncClient
        self.delay: float | None = 3600.0

    async def _engine(self) -> None:
        from offload import AsyncClient

        self.data = Path(tempfile.mkdtemp(prefix="peers-offload-"))
        self.port = free_port()
        argv = [str(BIN / "offload"), "serve", "--port", str(self.port), "--data-dir",
                str(self.data)]
        self.db_name = None
        if self.store == "postgres":
            import psycopg

            self.db_name = f"peers_offload_{secrets.token_hex(4)}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {self.db_name}")
            argv += ["--database-url", f"{PG_ADMIN.rsplit('/', 1)[0]}/{self.db_name}"]
        self.engine = Proc(argv, self.logs / f"offload-{self.store}.log",
                           env={"OFFLOAD_API_KEYS": API_KEY, "OFFLOAD_LOG_LEVEL": "warning",
                                "OFFLOAD_OUTBOUND_ALLOW": "127.0.0.1/32"})
        await self._wait(self.port, "/readyz")
        self.client = AsyncClient(f"http://{HOST}:{self.port}", api_key=API_KEY)

    async def _drop_engine(self) -> None:
        await self.client.aclose()
        self.engine.stop()
        if self.db_name:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {self.db_name} WITH (FORCE)")

    async def _wait(self, port: int, path: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                conn = await RawConn(HOST, port).connect()
                status, _ = await conn.request("GET", path)
                await conn.close()
                if status == 200:
                    return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"port {port} not ready")

    async def _target(self, path: str, method: str = "GET") -> Any:
        conn = await RawConn(HOST, self.target_port).connect()
        try:
            _, body = await conn.request(method, path)
        finally:
            await conn.close()
        return json.loads(body)

    async def purge(self) -> None:
        pass

    async def enqueue(self, t: float, k: int) -> None:
        await self.client.create_task(self.target_url, body={"k": k}, delay=self.delay)

    async def bulk(self, ts: list[float]) -> None:
        await self.client.create_tasks([{"url": self.target_url, "body": {"k": 0},
                                         "delay": self.delay} for _ in ts])

    async def start_worker(self, logs: Path) -> None:
        # The engine is its own worker: a fresh one, and tasks now run at once.
        await self._drop_engine()
        await self._engine()
        self.delay = None
        self.sent: dict[int, float] = {}

    async def stop_worker(self) -> None:
        pass

    async def done(self) -> int:
        return int((await self._target("/stats"))["hits"])

    async def reset_counts(self) -> None:
        await self._target("/reset", "POST")
        self.sent = {}

    async def latencies(self) -> list[float]:
        arrivals = (await self._target("/stats?arrivals=1"))["arrivals"]
        return [(arrivals[str(k)] - t) * 1000 for k, t in self.sent.items()
                if str(k) in arrivals]

    async def teardown(self) -> None:
        await self._drop_engine()
        self.target.stop()


SYSTEMS: dict[str, Callable[[], System]] = {
    "offload-sqlite": lambda: Offload("sqlite"),
    "offload-postgres": lambda: Offload("postgres"),
    "huey": Huey, "dramatiq": Dramatiq, "celery": Celery,
    "procrastinate": Procrastinate, "pgqueuer": PgQueuer,
}


async def _wait_done(system: System, n: int, timeout: float) -> float:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if await system.done() >= n:
            return time.perf_counter()
        await asyncio.sleep(0.01)
    raise RuntimeError(f"{system.name}: only {await system.done()}/{n} jobs ran")


async def run_system(system: System, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    await system.setup(logs)
    try:
        # 1. one call per job, no worker.
        await system.purge()
        lat = []
        t0 = time.perf_counter()
        for k in range(args.n):
            started = time.perf_counter()
            await system.enqueue(time.time(), k)
            lat.append((time.perf_counter() - started) * 1000)
        out["enqueue_rate"] = args.n / (time.perf_counter() - t0)
        out["call_p50"] = pct(lat, 50)
        # 2. bulk.
        await system.purge()
        if system.has_bulk:
            t0 = time.perf_counter()
            for start in range(0, args.n, 1000):
                await system.bulk([time.time()] * min(1000, args.n - start))
            out["bulk_rate"] = args.n / (time.perf_counter() - t0)
        await system.purge()
        # 3. end to end, worker running (warmed with one job first).
        await system.start_worker(logs)
        try:
            await system.reset_counts()
            await system.enqueue(0.0, -1)
            await _wait_done(system, 1, 60)
            await system.reset_counts()
            t0 = time.perf_counter()
            for k in range(args.n):
                await system.enqueue(0.0, k)
            end = await _wait_done(system, args.n, args.timeout)
            out["e2e_rate"] = args.n / (end - t0)
            # 4. start − enqueue at a steady rate.
            await system.reset_counts()
            count = int(args.rate * args.rate_seconds)
            begin = time.perf_counter() + 0.05
            sent: dict[int, float] = {}
            for k in range(count):
                wait = begin + k / args.rate - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                t = time.time()
                sent[k] = t
                await system.enqueue(t, k)
            if isinstance(system, Offload):
                system.sent = sent
            await _wait_done(system, count, 60)
            values = await system.latencies()
            out["lat_p50"], out["lat_p95"], out["lat_p99"] = (pct(values, q)
                                                              for q in (50, 95, 99))
        finally:
            await system.stop_worker()
    finally:
        await system.teardown()
    return out


def _cell(values: list[float], unit: str) -> str:
    if not values:
        return "—"
    mid = statistics.median(values)
    text = f"{mid:,.0f}/s" if unit == "/s" else f"{mid:.2f} ms"
    if len(values) > 1:
        lo, hi = min(values), max(values)
        text += f" ({lo:,.0f}–{hi:,.0f})" if unit == "/s" else f" ({lo:.2f}–{hi:.2f})"
    return text


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    lines = ["| system (store) | enqueue, 1 call/job | call p50 | bulk | end to end | "
             "start − enqueue at 100/s p50 / p95 / p99 |", "| --- | --- | --- | --- | --- | --- |"]
    for name, runs in results.items():
        def col(key: str, runs: list[dict[str, Any]] = runs) -> list[float]:
            return [r[key] for r in runs if key in r]

        lat = " / ".join(f"{statistics.median(col(k)):.1f}" if col(k) else "—"
                         for k in ("lat_p50", "lat_p95", "lat_p99"))
        lines.append(f"| {name} | {_cell(col('enqueue_rate'), '/s')} | "
                     f"{_cell(col('call_p50'), 'ms')} | {_cell(col('bulk_rate'), '/s')} | "
                     f"{_cell(col('e2e_rate'), '/s')} | {lat} ms |")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> None:
    import psycopg

    db = f"peers_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}")
    peers_common.PG_URL = f"{PG_ADMIN.rsplit('/', 1)[0]}/{db}"
    os.environ["PEERS_PG_URL"] = peers_common.PG_URL
    logs = Path(tempfile.mkdtemp(prefix="peers-logs-"))
    names = args.only.split(",") if args.only else list(SYSTEMS)
    results: dict[str, list[dict[str, Any]]] = {}
    print(f"peers: n={args.n} rate={args.rate}/s for {args.rate_seconds} s, "
          f"repeats={args.repeats}, logs in {logs}", flush=True)
    try:
        for rep in range(args.repeats):
            for key in names:
                system = SYSTEMS[key]()
                try:
                    r = await run_system(system, args, logs)
                except Exception as exc:  # one system failing must not lose the others
                    print(f"[{rep}] {system.name}: FAILED {exc!r}", flush=True)
                    continue
                results.setdefault(system.name, []).append(r)
                print(f"[{rep}] {system.name}: {json.dumps(r)}", flush=True)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        _redis().flushdb()
    print()
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000, help="Jobs per workload.")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--rate-seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--only", help=f"Comma-separated subset of {','.join(SYSTEMS)}.")
    parser.add_argument("--json")
    args = parser.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()

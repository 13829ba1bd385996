"""offload benchmark runner.

    .venv/bin/python bench/run.py [--store sqlite|postgres|both] [--quick] [--client]
                                  [--json out.json] [--py-spy DIR]

Starts, as real subprocesses on loopback: the engine (``offload dev``), a no-op
target (``bench/target.py``) and a trivial Starlette baseline (``bench/baseline.py``),
all served by uvicorn the same way. Every scenario gets a fresh engine on a fresh
database (SQLite: a temp dir; PostgreSQL: ``bench_<random>`` on 127.0.0.1:5432,
dropped afterwards). See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from rawhttp import RawConn, install_uvloop  # noqa: E402

PY = sys.executable
OFFLOAD = str(Path(PY).with_name("offload"))
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
HOST = "127.0.0.1"
ENGINE_PYTHONPATH = os.environ.get("BENCH_ENGINE_PYTHONPATH", "")
"""Prepended to the engine's import path only: benchmark a patched scratch copy of src/."""

# (key, label, unit, target, comparison) -- comparison "le" passes when value <= target.
TARGETS: list[tuple[str, str, str, float | None, str]] = [
    ("ack_p50", "ack latency p50 (sequential, 1 conn)", "ms", 1.0, "le"),
    ("ack_p99", "ack latency p99 (sequential, 1 conn)", "ms", 3.0, "le"),
    ("ingest_c32", "single-task ingest, concurrency 32", "acks/s", 5000, "ge"),
    ("batch_rate", "batch ingest (1000/request)", "tasks/s", 50000, "ge"),
    ("e2e_rate", "end-to-end HTTP tasks (submit → completed)", "tasks/s", 2000, "ge"),
    ("pickup_p50", "pickup committed → target called p50 @100/s", "ms", 5.0, "le"),
    ("pickup_p99", "pickup committed → target called p99 @100/s", "ms", 20.0, "le"),
    ("rss_idle", "engine RSS idle", "MB", 150, "le"),
    ("rss_load", "engine RSS under load (max)", "MB", None, "le"),
    ("base_ack_p50", "starlette baseline ack p50", "ms", None, "le"),
    ("base_ack_p99", "starlette baseline ack p99", "ms", None, "le"),
    ("base_c32", "starlette baseline, concurrency 32", "req/s", None, "ge"),
    ("ratio_ack_p50", "ratio ack p50 offload/starlette", "x", None, "le"),
    ("ratio_c32", "ratio c32 throughput offload/starlette", "x", None, "ge"),
    # --client: through offload.Client / AsyncClient against `offload serve` (API key).
    ("client_raw_p50", "serve: raw request p50 (sequential)", "ms", None, "le"),
    ("client_async_overhead", "AsyncClient.create_task p50 − raw p50", "ms", 0.3, "le"),
    ("client_sync_overhead", "Client.create_task p50 − raw p50", "ms", 0.3, "le"),
    ("client_async_cpu", "AsyncClient client CPU per call − raw's", "ms", None, "le"),
    ("client_sync_cpu", "Client client CPU per call − raw's", "ms", None, "le"),
    ("client_raw_rate", "serve: raw requests, 1 process, 32 at once", "tasks/s", None, "ge"),
    ("client_async_rate", "AsyncClient one call each, 1 process, 32 at once", "tasks/s",
     5000, "ge"),
    ("client_rate_ratio", "ratio AsyncClient/raw throughput", "x", None, "ge"),
    ("client_sync_rate", "Client one call each, 1 process, 8 threads", "tasks/s", None, "ge"),
    ("client_enqueue_rate", "AsyncClient.enqueue (batching producer)", "tasks/s", None, "ge"),
]
BENCH_KEY = "ofk_admin_bench0123456789abcdef"


@dataclass
class Config:
    ack_n: int = 2000
    ack_warmup: int = 200
    c32_conns: int = 32
    c32_procs: int = 2
    c32_warmup: float = 1.0
    c32_duration: float = 5.0
    batch_size: int = 1000
    batch_count: int = 30
    batch_conns: int = 2
    e2e_n: int = 5000
    e2e_timeout: float = 90.0
    pickup_rate: float = 100.0
    pickup_seconds: float = 10.0
    client: bool = False
    client_rounds: int = 5
    client_seconds: float = 3.0
    client_enqueue: int = 20000

    @classmethod
    def quick(cls) -> Config:
        return cls(ack_n=500, ack_warmup=100, c32_warmup=0.5, c32_duration=2.0, batch_count=10,
                   e2e_n=2000, pickup_seconds=4.0, client_rounds=3, client_seconds=2.0,
                   client_enqueue=10000)


# -- helpers ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


class Proc:
    """A server subprocess with its log, RSS sampling and CPU accounting."""

    def __init__(self, name: str, argv: list[str], port: int, log_dir: Path,
                 cwd: Path | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = port
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        env = dict(os.environ, OFFLOAD_LOG_LEVEL="warning", PYTHONUNBUFFERED="1")
        env.update(extra_env or {})
        self.popen = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                      cwd=cwd or ROOT, env=env)
        self.pid = self.popen.pid
        self._samples: list[float] = []
        self._sampling = threading.Event()
        self._thread: threading.Thread | None = None

    async def ready(self, path: str = "/healthz", timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
            try:
                conn = await RawConn(HOST, self.port).connect()
                try:
                    status, _ = await conn.request("GET", path)
                finally:
                    await conn.close()
                if status == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {timeout}s")

    def rss(self) -> float:
        return rss_mb(self.pid)

    def cpu(self) -> float:
        return cpu_s(self.pid)

    @contextlib.contextmanager
    def sampling(self) -> Iterator[list[float]]:
        """Sample RSS every 100 ms while inside the block."""
        samples: list[float] = []
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                samples.append(self.rss())
                stop.wait(0.1)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield samples
        finally:
            stop.set()
            thread.join()
            samples.append(self.rss())

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


@dataclass
class Database:
    store: str
    url: str | None  # None: SQLite in data_dir
    data_dir: Path

    def count_runs(self, status: str) -> int:
        if self.url is None:
            conn = sqlite3.connect(f"file:{self.data_dir / 'offload.db'}?mode=ro", uri=True,
                                   timeout=5)
            try:
                return conn.execute("SELECT count(*) FROM runs WHERE status = ?",
                                    (status,)).fetchone()[0]
            finally:
                conn.close()
        import psycopg
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute("SELECT count(*) FROM runs WHERE status = %s",
                                (status,)).fetchone()[0]


@contextlib.contextmanager
def fresh_database(store: str, scratch: Path, scenario: str) -> Iterator[Database]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"{store}-{scenario}-", dir=scratch))
    if store == "sqlite":
        try:
            yield Database(store, None, data_dir)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
        return
    import psycopg
    name = f"bench_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield Database(store, f"{base}/{name}", data_dir)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.asynccontextmanager
async def engine(db: Database, logs: Path, label: str, serve: bool = False,
                 env: dict[str, str] | None = None) -> AsyncIterator[Proc]:
    """``offload dev``, or with ``serve`` ``offload serve`` with the API key BENCH_KEY."""
    port = free_port()
    argv = [OFFLOAD, "serve" if serve else "dev", "--port", str(port), "--data-dir",
            str(db.data_dir)]
    if db.url:
        argv += ["--database-url", db.url]
    extra = {"PYTHONPATH": ENGINE_PYTHONPATH} if ENGINE_PYTHONPATH else {}
    if serve:
        extra["OFFLOAD_API_KEYS"] = BENCH_KEY
    extra.update(env or {})
    proc = Proc(f"engine-{db.store}-{label}", argv, port, logs, cwd=db.data_dir,
                extra_env=extra)
    try:
        await proc.ready("/readyz")
        yield proc
    finally:
        proc.stop()


@contextlib.contextmanager
def py_spy(proc: Proc, out_dir: Path | None, name: str, seconds: float) -> Iterator[None]:
    """Optionally record a py-spy profile (raw collapsed stacks) of the engine."""
    spy = Path(PY).with_name("py-spy")
    if out_dir is None or not spy.exists():
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    p = subprocess.Popen([str(spy), "record", "-p", str(proc.pid), "-d", str(int(seconds) + 1),
                          "-r", "250", "-f", "raw", "--threads", "-o",
                          str(out_dir / f"{name}.txt")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        try:
            p.wait(seconds + 20)
        except subprocess.TimeoutExpired:
            p.kill()


# -- measurements ----------------------------------------------------------------------------

async def target_call(target: Proc, method: str, path: str) -> Any:
    """One call to the target on a fresh connection (uvicorn drops idle ones after 5 s)."""
    conn = await RawConn(HOST, target.port).connect()
    try:
        _, body = await conn.request(method, path)
    finally:
        await conn.close()
    return orjson.loads(body)


def task_body(target_url: str, *, delay: float | None, k: int | None = None) -> dict[str, Any]:
    task: dict[str, Any] = {"url": target_url, "method": "POST",
                            "body": {"k": k, "t": time.time()} if k is not None else {"n": 1}}
    if delay is not None:
        task["delay"] = delay
    return task


async def ack_latency(port: int, body: bytes, n: int, warmup: int) -> dict[str, float]:
    """Sequential POSTs on one keep-alive connection; latency of each."""
    conn = await RawConn(HOST, port).connect()
    request = conn.build("POST", "/v1/tasks", body)
    lat: list[float] = []
    try:
        for i in range(warmup + n):
            started = time.perf_counter()
            status, answer = await conn.send_raw(request)
            elapsed = (time.perf_counter() - started) * 1000
            if status != 202:
                raise RuntimeError(f"ack: {status} {answer[:300]!r}")
            if i >= warmup:
                lat.append(elapsed)
    finally:
        await conn.close()
    return {"p50": pct(lat, 50), "p99": pct(lat, 99), "mean": sum(lat) / len(lat),
            "max": max(lat)}


async def concurrency(port: int, body: bytes, cfg: Config, scratch: Path) -> dict[str, Any]:
    """``cfg.c32_conns`` closed-loop connections split over ``cfg.c32_procs`` processes."""
    body_file = scratch / f"body-{secrets.token_hex(4)}.json"
    body_file.write_bytes(body)
    start_at = time.time() + 1.0
    per_proc = [cfg.c32_conns // cfg.c32_procs] * cfg.c32_procs
    per_proc[0] += cfg.c32_conns - sum(per_proc)
    procs = [subprocess.Popen(
        [PY, str(BENCH / "loadgen.py"), "--port", str(port), "--body-file", str(body_file),
         "--conns", str(c), "--start-at", repr(start_at), "--warmup", str(cfg.c32_warmup),
         "--duration", str(cfg.c32_duration)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for c in per_proc]
    outs = []
    for p in procs:
        stdout, stderr = await asyncio.to_thread(p.communicate)
        if p.returncode != 0:
            raise RuntimeError(f"loadgen failed: {stderr.decode()[-2000:]}")
        outs.append(json.loads(stdout))
    ok = sum(o["ok"] for o in outs)
    errors = sum(o["errors"] for o in outs)
    lat = [x for o in outs for x in o["lat_ms"]]
    statuses: dict[str, int] = {}
    for o in outs:
        for k, v in o["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    return {"rate": ok / cfg.c32_duration, "errors": errors, "statuses": statuses,
            "p50": pct(lat, 50), "p99": pct(lat, 99)}


async def batch_ingest(port: int, target_url: str, cfg: Config) -> dict[str, float]:
    """Batches of ``batch_size`` delayed tasks over ``batch_conns`` connections."""
    tasks = [task_body(target_url, delay=3600) for _ in range(cfg.batch_size)]
    body = orjson.dumps({"tasks": tasks})
    conns = [await RawConn(HOST, port).connect() for _ in range(cfg.batch_conns)]
    request = conns[0].build("POST", "/v1/tasks/batch", body)
    # One warm-up batch per connection, not timed.
    for conn in conns:
        status, answer = await conn.send_raw(request)
        if status != 202:
            raise RuntimeError(f"batch: {status} {answer[:300]!r}")
    remaining = cfg.batch_count
    lat: list[float] = []

    async def worker(conn: RawConn) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            status, answer = await conn.send_raw(request)
            lat.append((time.perf_counter() - started) * 1000)
            if status != 202:
                raise RuntimeError(f"batch: {status} {answer[:300]!r}")

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - started
    for conn in conns:
        await conn.close()
    return {"rate": cfg.batch_count * cfg.batch_size / elapsed, "elapsed_s": elapsed,
            "req_p50_ms": pct(lat, 50), "req_max_ms": max(lat)}


async def end_to_end(port: int, target: Proc, target_url: str, db: Database, cfg: Config,
                     engine_proc: Proc) -> dict[str, Any]:
    """Submit ``e2e_n`` tasks in batches; time until every run is completed."""
    await target_call(target, "POST", "/reset")
    conn = await RawConn(HOST, port).connect()
    bodies = []
    for start in range(0, cfg.e2e_n, cfg.batch_size):
        size = min(cfg.batch_size, cfg.e2e_n - start)
        bodies.append(orjson.dumps({"tasks": [task_body(target_url, delay=None, k=start + i)
                                              for i in range(size)]}))
    cpu0 = engine_proc.cpu()
    t0 = time.perf_counter()
    for body in bodies:
        status, answer = await conn.send_raw(conn.build("POST", "/v1/tasks/batch", body))
        if status != 202:
            raise RuntimeError(f"e2e submit: {status} {answer[:300]!r}")
    submitted = time.perf_counter() - t0
    last_hit_at = None
    completed = 0
    deadline = t0 + cfg.e2e_timeout
    while time.perf_counter() < deadline:
        if last_hit_at is None:
            if (await target_call(target, "GET", "/stats"))["hits"] >= cfg.e2e_n:
                last_hit_at = time.perf_counter() - t0
        completed = await asyncio.to_thread(db.count_runs, "completed")
        if completed >= cfg.e2e_n:
            break
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - t0
    cpu = engine_proc.cpu() - cpu0
    failed = await asyncio.to_thread(db.count_runs, "failed")
    hits = (await target_call(target, "GET", "/stats"))["hits"]
    await conn.close()
    return {"rate": completed / elapsed, "completed": completed, "failed": failed,
            "target_hits": hits, "elapsed_s": elapsed, "submit_s": submitted,
            "last_hit_s": last_hit_at, "engine_cpu_s": cpu,
            "timed_out": completed < cfg.e2e_n}


async def pickup(port: int, target: Proc, target_url: str, cfg: Config) -> dict[str, Any]:
    """Tasks at a steady rate, no delay; target arrival minus ack receipt per task."""
    await target_call(target, "POST", "/reset")
    conn = await RawConn(HOST, port).connect()
    n = int(cfg.pickup_rate * cfg.pickup_seconds)
    acks: dict[int, float] = {}
    ack_lat: list[float] = []
    interval = 1.0 / cfg.pickup_rate
    start = time.perf_counter() + 0.05
    for k in range(n):
        wait = start + k * interval - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        body = orjson.dumps(task_body(target_url, delay=None, k=k))
        sent = time.time()
        status, answer = await conn.send_raw(conn.build("POST", "/v1/tasks", body))
        acked = time.time()
        if status != 202:
            raise RuntimeError(f"pickup submit: {status} {answer[:300]!r}")
        acks[k] = acked
        ack_lat.append((acked - sent) * 1000)
    deadline = time.monotonic() + 10
    arrivals: dict[str, float] = {}
    while time.monotonic() < deadline:
        arrivals = (await target_call(target, "GET", "/stats?arrivals=1"))["arrivals"]
        if len(arrivals) >= n:
            break
        await asyncio.sleep(0.1)
    await conn.close()
    pick = [(arrivals[str(k)] - acks[k]) * 1000 for k in acks if str(k) in arrivals]
    return {"p50": pct(pick, 50), "p99": pct(pick, 99), "max": max(pick) if pick else None,
            "min": min(pick) if pick else None, "arrived": len(pick), "sent": n,
            "ack_p50": pct(ack_lat, 50), "ack_p99": pct(ack_lat, 99)}


async def client_mode(port: int, cfg: Config) -> dict[str, Any]:
    """bench/client.py in its own process (default asyncio loop, as users run it)."""
    argv = [PY, str(BENCH / "client.py"), "--url", f"http://{HOST}:{port}", "--api-key",
            BENCH_KEY, "--rounds", str(cfg.client_rounds), "--seconds",
            str(cfg.client_seconds), "--enqueue", str(cfg.client_enqueue)]
    proc = await asyncio.to_thread(subprocess.run, argv, capture_output=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"client bench failed: {proc.stderr.decode()[-2000:]}")
    return dict(json.loads(proc.stdout))


# -- the run ---------------------------------------------------------------------------------

async def bench_store(store: str, cfg: Config, scratch: Path, logs: Path, target: Proc,
                      baseline: Proc, spy_dir: Path | None) -> dict[str, Any]:
    target_url = f"http://{HOST}:{target.port}/hit"
    delayed = orjson.dumps(task_body(target_url, delay=3600))
    r: dict[str, Any] = {"store": store, "detail": {}}
    d = r["detail"]

    def say(msg: str) -> None:
        print(f"[{store}] {msg}", flush=True)

    # 1. ack latency (sequential), baseline first and offload right after.
    base = await ack_latency(baseline.port, delayed, cfg.ack_n, cfg.ack_warmup)
    with fresh_database(store, scratch, "ack") as db:
        async with engine(db, logs, "ack") as eng:
            await asyncio.sleep(1.0)
            r["rss_idle"] = eng.rss()
            say(f"engine idle RSS {r['rss_idle']:.1f} MB")
            cpu0 = eng.cpu()
            ack = await ack_latency(eng.port, delayed, cfg.ack_n, cfg.ack_warmup)
            d["ack"] = ack | {"engine_cpu_ms_per_ack": (eng.cpu() - cpu0) * 1000
                              / (cfg.ack_n + cfg.ack_warmup)}
    r["ack_p50"], r["ack_p99"] = ack["p50"], ack["p99"]
    r["base_ack_p50"], r["base_ack_p99"] = base["p50"], base["p99"]
    d["base_ack"] = base
    say(f"ack p50 {ack['p50']:.3f} ms p99 {ack['p99']:.3f} ms "
        f"(starlette {base['p50']:.3f} / {base['p99']:.3f})")

    # 2. concurrency 32 (multi-process closed loop).
    base_c = await concurrency(baseline.port, delayed, cfg, scratch)
    with fresh_database(store, scratch, "c32") as db:
        async with engine(db, logs, "c32") as eng:
            cpu0 = eng.cpu()
            with eng.sampling() as samples, \
                    py_spy(eng, spy_dir, f"{store}-c32", cfg.c32_warmup + cfg.c32_duration + 1):
                c32 = await concurrency(eng.port, delayed, cfg, scratch)
            c32["engine_cpu_s"] = eng.cpu() - cpu0
            rss_load = [max(samples)]
    r["ingest_c32"], r["base_c32"] = c32["rate"], base_c["rate"]
    d["c32"], d["base_c32"] = c32, base_c
    say(f"c32 {c32['rate']:.0f} acks/s (p50 {c32['p50']:.2f} ms, p99 {c32['p99']:.2f} ms, "
        f"errors {c32['errors']}); starlette {base_c['rate']:.0f} req/s")

    # 3. batch ingest.
    with fresh_database(store, scratch, "batch") as db:
        async with engine(db, logs, "batch") as eng:
            with eng.sampling() as samples:
                batch = await batch_ingest(eng.port, target_url, cfg)
            rss_load.append(max(samples))
    r["batch_rate"] = batch["rate"]
    d["batch"] = batch
    say(f"batch {batch['rate']:.0f} tasks/s (request p50 {batch['req_p50_ms']:.1f} ms)")

    # 4. end to end.
    with fresh_database(store, scratch, "e2e") as db:
        async with engine(db, logs, "e2e") as eng:
            with eng.sampling() as samples, py_spy(eng, spy_dir, f"{store}-e2e", 8):
                e2e = await end_to_end(eng.port, target, target_url, db, cfg, eng)
            rss_load.append(max(samples))
            await asyncio.sleep(2.0)
            d["rss_idle_after_load"] = eng.rss()
    r["e2e_rate"] = e2e["rate"]
    d["e2e"] = e2e
    say(f"e2e {e2e['rate']:.0f} tasks/s ({e2e['completed']}/{cfg.e2e_n} completed in "
        f"{e2e['elapsed_s']:.2f} s, failed {e2e['failed']}, submit {e2e['submit_s']:.2f} s)")

    # 5. pickup latency at a steady rate.
    with fresh_database(store, scratch, "pickup") as db:
        async with engine(db, logs, "pickup") as eng:
            pk = await pickup(eng.port, target, target_url, cfg)
    r["pickup_p50"], r["pickup_p99"] = pk["p50"], pk["p99"]
    d["pickup"] = pk
    say(f"pickup p50 {pk['p50']:.2f} ms p99 {pk['p99']:.2f} ms "
        f"({pk['arrived']}/{pk['sent']} arrived)")

    # 6. through offload's own client, against `offload serve` with an API key.
    if cfg.client:
        with fresh_database(store, scratch, "client") as db:
            async with engine(db, logs, "client", serve=True) as eng:
                cl = await client_mode(eng.port, cfg)
        d["client"] = cl
        lat, rate = cl["latency"], cl["rate"]
        r["client_raw_p50"] = lat["raw"]["p50"]
        r["client_async_overhead"] = lat["async"]["overhead_p50"]
        r["client_sync_overhead"] = lat["sync"]["overhead_p50"]
        r["client_async_cpu"] = lat["async"].get("cpu_overhead_ms")
        r["client_sync_cpu"] = lat["sync"].get("cpu_overhead_ms")
        r["client_raw_rate"] = rate["raw"]["median"]
        r["client_async_rate"] = rate["async"]["median"]
        r["client_rate_ratio"] = rate["async_over_raw"]
        r["client_sync_rate"] = rate["sync"]["median"]
        r["client_enqueue_rate"] = cl.get("enqueue", {}).get("rate")
        say(f"client: raw p50 {lat['raw']['p50']:.3f} ms, AsyncClient +"
            f"{lat['async']['overhead_p50']:.3f} ms, Client +{lat['sync']['overhead_p50']:.3f}"
            f" ms; rate raw {rate['raw']['median']:.0f}/s, AsyncClient "
            f"{rate['async']['median']:.0f}/s, Client {rate['sync']['median']:.0f}/s, "
            f"enqueue() {r['client_enqueue_rate'] or 0:.0f}/s")

    r["rss_load"] = max(rss_load)
    r["ratio_ack_p50"] = r["ack_p50"] / r["base_ack_p50"]
    r["ratio_c32"] = r["ingest_c32"] / r["base_c32"]
    return r


def verdict(value: float | None, target: float | None, cmp: str) -> str:
    if target is None or value is None or value != value:
        return ""
    ok = value <= target if cmp == "le" else value >= target
    return "PASS" if ok else "MISS"


def fmt(value: Any, unit: str) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    if unit in ("ms", "x"):
        return f"{value:.2f}"
    if unit == "MB":
        return f"{value:.1f}"
    return f"{value:,.0f}"


def table(results: list[dict[str, Any]]) -> str:
    head = "| metric | target | " + " | ".join(r["store"] for r in results) + " |"
    sep = "|---|---|" + "---|" * len(results)
    lines = [head, sep]
    for key, label, unit, target, cmp in TARGETS:
        if all(r.get(key) is None for r in results):
            continue
        tgt = "" if target is None else f"{'≤' if cmp == 'le' else '≥'} {fmt(float(target), unit)}"
        cells = []
        for r in results:
            v = r.get(key)
            mark = verdict(v, target, cmp)
            cells.append(f"{fmt(v, unit)}" + (f" **{mark}**" if mark else ""))
        lines.append(f"| {label} ({unit}) | {tgt} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> int:
    cfg = Config.quick() if args.quick else Config()
    cfg.client = args.client
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    scratch = Path(tempfile.mkdtemp(prefix="offload-bench-"))
    logs = scratch / "logs"
    logs.mkdir()
    spy_dir = Path(args.py_spy).resolve() if args.py_spy else None
    print(f"offload bench: stores={stores} quick={args.quick} scratch={scratch}", flush=True)
    print(f"machine: nproc={os.cpu_count()} python={platform.python_version()} "
          f"kernel={platform.release()}", flush=True)
    started = time.monotonic()
    tport, bport = free_port(), free_port()
    target = Proc("target", [PY, str(BENCH / "target.py"), "--port", str(tport)], tport, logs)
    baseline = Proc("baseline", [PY, str(BENCH / "baseline.py"), "--port", str(bport)], bport,
                    logs)
    results = []
    try:
        await target.ready("/stats")
        await baseline.ready("/healthz")
        for store in stores:
            results.append(await bench_store(store, cfg, scratch, logs, target, baseline,
                                             spy_dir))
    finally:
        target.stop()
        baseline.stop()
    print()
    print(table(results))
    print(f"\nwhole run: {time.monotonic() - started:.0f} s; "
          "c32 load: %d conns over %d loadgen processes (raw HTTP/1.1 keep-alive client)"
          % (cfg.c32_conns, cfg.c32_procs))
    if args.json:
        Path(args.json).write_text(json.dumps({"config": cfg.__dict__, "results": results},
                                              indent=2, default=str))
    if args.keep_logs:
        print(f"logs kept in {logs}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    misses = [k for r in results for k, _, _, t, c in TARGETS
              if verdict(r.get(k), t, c) == "MISS"]
    return 1 if misses and args.strict else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument("--quick", action="store_true", help="Shorter scenarios (~1 min).")
    parser.add_argument("--json", help="Also write the figures and details to this file.")
    parser.add_argument("--py-spy", metavar="DIR",
                        help="Record py-spy profiles of the c32 and e2e scenarios into DIR "
                             "(perturbs the figures; use for diagnosis only).")
    parser.add_argument("--client", action="store_true",
                        help="Also measure offload.Client/AsyncClient against `offload serve` "
                             "beside raw requests (bench/client.py).")
    parser.add_argument("--keep-logs", action="store_true", help="Keep server logs.")
    parser.add_argument("--strict", action="store_true", help="Exit 1 on any MISS.")
    args = parser.parse_args()
    install_uvloop()
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()

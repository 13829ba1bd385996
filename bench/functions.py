"""Durable functions with the Python SDK: latency, throughput and the engine's cost per step.

Starts ``offload dev`` (fresh database) and bench/fn_app.py (FastAPI + the official
``inngest`` SDK, one function of three ``step.run`` calls) as subprocesses on loopback,
both sharing this machine's cores, syncs the app and measures:

* latency of one run, sequentially: event sent → run ended, p50/p99. Client side (send
  until /v1/runs/{id}/wait answers) and engine side (event received_at → run ended_at);
* runs/s with many runs in flight: 1,000 events sent in lists of 100, until all ended;
* the engine's own CPU per call to the app (a 3-step run is 4 calls), from /proc.

    .venv/bin/python bench/functions.py [--store sqlite|postgres|both] [--runs 1000]

``--round-trips`` (PostgreSQL) puts a counting proxy (tests/support/pg_wire.py) between
the engine and the database and reports the round trips per call of the throughput
phase (the proxy shares the cores: its timings are not comparable). ``--profile DIR``
records the engine with py-spy during the throughput phase (raw folded stacks).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
FUNCTION = "bench-three-steps"
CALLS_PER_RUN = 4


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wait_http(url: str) -> None:
    for _ in range(300):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def completed(api: httpx.Client) -> int:
    total, cursor = 0, None
    while True:
        params: dict[str, Any] = {"function_id": FUNCTION, "status": "completed", "limit": 500}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/v1/runs", params=params).json()
        total += len(page["data"])
        cursor = page["next_cursor"]
        if not cursor:
            return total


def run_of(api: httpx.Client, event_id: str) -> str:
    for _ in range(10_000):
        runs = api.get(f"/v1/events/{event_id}").json().get("runs") or []
        if runs:
            return str(runs[0]["id"])
        time.sleep(0.001)
    raise RuntimeError("no run started")


def bench(store: str, runs: int, scratch: Path, *, round_trips: bool = False,
          profile: Path | None = None) -> dict[str, float]:
    db_name = None
    counter = None
    if store == "sqlite":
        url = f"sqlite:///{scratch / store / 'offload.db'}"
    else:
        import psycopg

        db_name = f"bench_{secrets.token_hex(4)}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {db_name}")
        url = f"postgresql://postgres@127.0.0.1:5432/{db_name}"
        if round_trips:
            sys.path.insert(0, str(BENCH.parent))
            from tests.support.pg_wire import RoundTripCounter

            counter = RoundTripCounter(url).start()
            url = counter.url
    port, app_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INNGEST_", "OFFLOAD_"))}
    engine = subprocess.Popen(
        [sys.executable, "-m", "offload", "dev", "--port", str(port), "--data-dir",
         str(scratch / store), "--database-url", url], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    app = subprocess.Popen([sys.executable, str(BENCH / "fn_app.py"), "--port", str(app_port)],
                           env={**env, "INNGEST_DEV": f"http://127.0.0.1:{port}"},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        wait_http(f"http://127.0.0.1:{app_port}/api/inngest")
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        synced = api.post("/v1/apps", json={"url": f"http://127.0.0.1:{app_port}/api/inngest"})
        assert synced.status_code == 200, synced.text

        client_ms: list[float] = []
        engine_ms: list[float] = []
        for i in range(220):
            started = time.perf_counter()
            event_id = api.post("/e/bench", json={"name": "bench/go", "data": {"n": i}}).json()[
                "ids"][0]
            run = api.get(f"/v1/runs/{run_of(api, event_id)}/wait",
                          params={"timeout": 30}).json()
            elapsed = (time.perf_counter() - started) * 1000
            assert run["status"] == "completed", run
            if i >= 20:  # warm-up excluded
                client_ms.append(elapsed)
                received = api.get(f"/v1/events/{event_id}").json()["received_at"]
                engine_ms.append((datetime.fromisoformat(run["ended_at"])
                                  - datetime.fromisoformat(received)).total_seconds() * 1000)

        done_before = completed(api)
        spy = None
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            spy = subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                 str(engine.pid), "--format", "raw", "--rate", "200", "--nonblocking",
                 "-o", str(profile / f"engine-{store}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        trips_before = counter.round_trips if counter else 0
        cpu_engine, cpu_app = cpu_s(engine.pid), cpu_s(app.pid)
        started = time.perf_counter()
        for start in range(0, runs, 100):
            batch = [{"name": "bench/go", "data": {"n": n}}
                     for n in range(start, min(runs, start + 100))]
            assert api.post("/e/bench", json=batch).status_code == 200
        while completed(api) < done_before + runs:
            if time.perf_counter() - started > 600:
                raise RuntimeError("throughput run did not finish in 10 minutes")
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        engine_cpu = cpu_s(engine.pid) - cpu_engine
        app_cpu = cpu_s(app.pid) - cpu_app
        trips = (counter.round_trips - trips_before) if counter else 0
        if spy is not None:
            spy.send_signal(2)
            spy.wait(30)
        return {
            "round_trips_per_call": trips / (runs * CALLS_PER_RUN),
            "all_cpu_per_call_ms": (engine_cpu + app_cpu) / (runs * CALLS_PER_RUN) * 1000,
            "client_p50": statistics.median(client_ms), "client_p99": pct(client_ms, 0.99),
            "engine_p50": statistics.median(engine_ms), "engine_p99": pct(engine_ms, 0.99),
            "runs_per_s": runs / elapsed,
            "engine_cpu_per_call_ms": engine_cpu / (runs * CALLS_PER_RUN) * 1000,
            "app_cpu_per_call_ms": app_cpu / (runs * CALLS_PER_RUN) * 1000,
        }
    finally:
        engine.kill()
        app.kill()
        engine.wait()
        app.wait()
        if counter is not None:
            counter.stop()
        if db_name:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE {db_name} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--round-trips", action="store_true",
                        help="count PostgreSQL round trips per call through a proxy")
    parser.add_argument("--profile", type=Path, help="py-spy the engine into this folder")
    args = parser.parse_args()
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    rows = [
        ("latency p50, client (send → /wait answers)", "client_p50", "ms", "≤ 15"),
        ("latency p99, client", "client_p99", "ms", ""),
        ("latency p50, engine (event received → run ended)", "engine_p50", "ms", "≤ 15"),
        ("latency p99, engine", "engine_p99", "ms", ""),
        (f"throughput, {args.runs} runs in flight", "runs_per_s", "runs/s", "≥ 300"),
        ("engine CPU per call to the app", "engine_cpu_per_call_ms", "ms", ""),
        ("app (SDK) CPU per call", "app_cpu_per_call_ms", "ms", ""),
        ("engine + app CPU per call", "all_cpu_per_call_ms", "ms", ""),
    ]
    if args.round_trips:
        rows.append(("PostgreSQL round trips per call (incl. claims, fan-out)",
                     "round_trips_per_call", "", "≤ 2"))
    with tempfile.TemporaryDirectory(prefix="offload-fn-bench-") as tmp:
        results = {store: bench(store, args.runs, Path(tmp), round_trips=args.round_trips,
                                profile=args.profile) for store in stores}
    print(f"load average at the end: {os.getloadavg()}")
    print(f"| 3-step function, Python SDK (FastAPI) | target | {' | '.join(stores)} |")
    print(f"| --- | --- |{' --- |' * len(stores)}")
    for label, key, unit, target in rows:
        cells = " | ".join(f"{results[s][key]:.2f} {unit}" for s in stores)
        print(f"| {label} | {target} | {cells} |")


if __name__ == "__main__":
    main()

"""`POST /e/{key}` (what the SDKs' `send` calls) while durable-function runs are in flight.

    .venv/bin/python bench/send_inflight.py [--store sqlite|postgres] [--inflight 1000]
                                            [--workers N]

``--workers N``: ``offload serve --insecure --workers N`` instead of ``offload dev``
(``--workers 1`` is one process; 2 is an API front beside an executor).

An ``offload dev`` engine and bench/fn_app.py (3-step function, Python SDK). Measures the
p50/p99 of single-event sends on one keep-alive connection (raw request bytes): first on
the idle engine, then while ``--inflight`` runs (started by one batch of events) are
being executed, and the Starlette baseline's p50 for scale. The probes are events no
function listens for (so they add no runs), spaced 10 ms apart, until the batch's runs
have completed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import httpx  # noqa: E402
from functions import completed, free_port, pct, wait_http  # noqa: E402
from rawhttp import RawConn, install_uvloop  # noqa: E402

PY = sys.executable
EVENT = json.dumps({"name": "bench/probe", "data": {"n": 0}}).encode()
"""The probe: an event no function listens for, so probes add no runs of their own."""


async def sends(port: int, path: str, n: int, stop: asyncio.Event | None = None,
                gap: float = 0.0, body: bytes = EVENT) -> list[float]:
    conn = await RawConn("127.0.0.1", port).connect()
    request = conn.build("POST", path, body)
    lat = []
    try:
        for _ in range(n):
            if stop is not None and stop.is_set():
                break
            t = time.perf_counter()
            status, answer = await conn.send_raw(request)
            lat.append((time.perf_counter() - t) * 1000)
            if status >= 300:
                raise RuntimeError(f"{status} {answer[:200]!r}")
            if gap:
                await asyncio.sleep(gap)
    finally:
        await conn.close()
    return lat


async def main_async(args: argparse.Namespace) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="send-inflight-"))
    url = f"sqlite:///{scratch / 'offload.db'}"
    db_name = None
    if args.store == "postgres":
        import psycopg

        db_name = f"bench_send_{os.getpid()}"
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres",
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {db_name}")
        url = f"postgresql://postgres@127.0.0.1:5432/{db_name}"
    port, app_port, base_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INNGEST_", "OFFLOAD_"))}
    mode = ["dev"]
    engine_env = {**env, **({"OFFLOAD_MAX_INFLIGHT": str(args.max_inflight)}
                            if args.max_inflight else {})}
    if args.workers:
        mode = ["serve", "--insecure", "--workers", str(args.workers)]
        engine_env.update(OFFLOAD_OUTBOUND_ALLOW="127.0.0.1/32", OFFLOAD_EVENT_KEYS="bench")
    procs = [
        subprocess.Popen([PY, "-m", "offload", *mode, "--port", str(port), "--data-dir",
                          str(scratch), "--database-url", url],
                         env=engine_env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([PY, str(BENCH / "fn_app.py"), "--port", str(app_port)],
                         env={**env, "INNGEST_DEV": f"http://127.0.0.1:{port}"},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([PY, str(BENCH / "baseline.py"), "--port", str(base_port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        wait_http(f"http://127.0.0.1:{app_port}/api/inngest")
        wait_http(f"http://127.0.0.1:{base_port}/healthz")
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        synced = api.post("/v1/apps", json={"url": f"http://127.0.0.1:{app_port}/api/inngest"})
        assert synced.status_code == 200, synced.text
        base = await sends(base_port, "/v1/tasks", 500,
                           body=b'{"url": "https://example.com/"}')
        idle = await sends(port, "/e/bench", 300, gap=0.002)
        done_before = completed(api)
        batch = [{"name": "bench/go", "data": {"n": n}} for n in range(args.inflight)]
        started = time.perf_counter()
        assert api.post("/e/bench", json=batch).status_code == 200
        stop = asyncio.Event()
        probe = asyncio.create_task(sends(port, "/e/bench", 100_000, stop=stop, gap=0.01))
        while time.perf_counter() - started < 300:
            if await asyncio.to_thread(completed, api) - done_before >= args.inflight:
                break
            await asyncio.sleep(0.2)
        stop.set()
        during = await probe
        flight_s = time.perf_counter() - started
        finished = completed(api) - done_before
    finally:
        for p in procs:
            p.kill()
            p.wait()
        if db_name:
            import psycopg

            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres",
                                 autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
    print(json.dumps({
        "store": args.store, "workers": args.workers or "dev",
        "max_inflight": args.max_inflight or "default",
        "load": os.getloadavg()[0],
        "starlette_p50_ms": pct(base, 0.5),
        "idle_send_p50_ms": pct(idle, 0.5), "idle_send_p99_ms": pct(idle, 0.99),
        "inflight_send_p50_ms": pct(during, 0.5), "inflight_send_p99_ms": pct(during, 0.99),
        "sends_during_flight": len(during), "flight_s": flight_s, "runs_finished": finished}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--inflight", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=0,
                        help="Run `offload serve --workers N` (default: `offload dev`).")
    parser.add_argument("--max-inflight", type=int, default=0,
                        help="OFFLOAD_MAX_INFLIGHT for the engine (default: its own).")
    args = parser.parse_args()
    install_uvloop()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()

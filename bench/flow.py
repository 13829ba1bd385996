"""Flow-control overhead: claim cost with a saturated backlog, and throughput with a limit.

1. **Claim cost.** Per ``queue_claim`` call (batches of 64), draining 5,000 due runs from
   an empty store, versus the same 5,000 with 100,000 queued runs spread over 10,000
   saturated concurrency keys (limit 1: 10,000 leased, 90,000 blocked). Measured for
   runs without a key and for runs with their own key (limit never reached).
   Target: backlog / empty ≤ 1.5.
2. **End to end.** ``offload dev`` calling the no-op ``bench/target.py``: 4,000 tasks
   submitted in batches of 1,000, time until the target saw all of them; with a queue
   concurrency limit of 100,000 (never reached) versus none. Target: ≥ 0.9.

Run: ``.venv/bin/python bench/flow.py --store both`` (PostgreSQL from
``OFFLOAD_BENCH_POSTGRES_URL``, default ``postgresql://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from offload.ids import new_id, new_token
from offload.models import ItemKind
from offload.store import open_store
from offload.store.base import Change, ConcurrencyLimit, NewItem, NewRun, RunFlow

PG_URL = os.environ.get("OFFLOAD_BENCH_POSTGRES_URL",
                        "postgresql://postgres@127.0.0.1:5432/postgres")
HERE = Path(__file__).resolve().parent
T0 = datetime(2030, 1, 1, tzinfo=UTC)
FAR = datetime(2100, 1, 1, tzinfo=UTC)


@contextlib.contextmanager
def database(store: str) -> Iterator[str]:
    """A fresh SQLite file or PostgreSQL schema; its URL."""
    scratch = Path(tempfile.mkdtemp(prefix="offload-flow-bench-"))
    if store == "sqlite":
        try:
            yield f"sqlite:///{scratch / 'offload.db'}"
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return
    import psycopg

    schema = f"bench_{secrets.token_hex(5)}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
        shutil.rmtree(scratch, ignore_errors=True)


def _runs(n: int, *, key: str | None = None, keys: int = 0, limit: int = 1,
          at: datetime = T0) -> list[NewRun]:
    out = []
    for i in range(n):
        flow = None
        if keys:
            flow = RunFlow(concurrency=[ConcurrencyLimit(f"backlog-{i % keys}", limit)])
        elif key is not None:
            flow = RunFlow(concurrency=[ConcurrencyLimit(f"{key}-{i}", 100_000)])
        out.append(NewRun(id=new_id(), function_id="http", created_at=at, flow=flow,
                          items=[NewItem(kind=ItemKind.RUN, due_at=at)]))
    return out


async def _insert(store: Any, runs: list[NewRun]) -> None:
    for start in range(0, len(runs), 1000):
        await store.apply(Change(runs=runs[start:start + 1000]))


async def _drain(store: Any, now: datetime) -> tuple[int, float]:
    """Claim until nothing is due (as the scheduler does), in batches of 64; (calls, s)."""
    calls = 0
    started = time.perf_counter()
    while True:
        items = await store.queue_claim(owner="bench", token=new_token(), now=now, limit=64,
                                        lease_until=FAR)
        calls += 1
        if not items:
            due = await store.queue_next_due()
            if due is None or due > now:
                return calls, time.perf_counter() - started


async def claim_cost(store_name: str, *, backlog: bool, keyed: bool, n: int = 5000
                     ) -> dict[str, float]:
    with database(store_name) as url:
        store = open_store(url)
        await store.open()
        try:
            if backlog:
                await _insert(store, _runs(100_000, keys=10_000, limit=1))
                await _drain(store, T0)  # 10,000 leased, 90,000 blocked
            at = T0 + timedelta(seconds=1)
            await _insert(store, _runs(n, key="fresh" if keyed else None, at=at))
            calls, seconds = await _drain(store, at)
            return {"per_claim_ms": seconds / calls * 1000, "calls": calls}
        finally:
            await store.close()


# -- end to end ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url, timeout=1)).status_code < 500:
                    return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} not ready")


@contextlib.asynccontextmanager
async def _process(argv: list[str], ready: str, log: Path) -> AsyncIterator[None]:
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        await _ready(ready, proc)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def end_to_end(store_name: str, *, limit: int | None, n: int = 4000) -> float:
    """Tasks per second from first submission to the target's last hit."""
    with database(store_name) as url:
        data = Path(tempfile.mkdtemp(prefix="offload-flow-e2e-"))
        tport, eport = _free_port(), _free_port()
        target = [sys.executable, str(HERE / "target.py"), "--port", str(tport)]
        engine = [sys.executable, "-m", "offload", "dev", "--port", str(eport), "--data-dir",
                  str(data), "--database-url", url]
        try:
            async with _process(target, f"http://127.0.0.1:{tport}/stats", data / "t.log"), \
                    _process(engine, f"http://127.0.0.1:{eport}/readyz", data / "e.log"):
                base = f"http://127.0.0.1:{eport}"
                task: dict[str, Any] = {"url": f"http://127.0.0.1:{tport}/hit", "body": {"n": 1},
                                        "queue": "bench"}
                if limit is not None:
                    task["concurrency"] = limit
                async with httpx.AsyncClient(timeout=120) as client:
                    started = time.perf_counter()
                    for _ in range(n // 1000):
                        r = await client.post(f"{base}/v1/tasks/batch",
                                              json={"tasks": [task] * 1000})
                        r.raise_for_status()
                    while True:
                        hits = (await client.get(f"http://127.0.0.1:{tport}/stats")).json()
                        if hits["hits"] >= n:
                            return n / (time.perf_counter() - started)
                        if time.perf_counter() - started > 300:
                            raise RuntimeError(f"only {hits['hits']} of {n} arrived")
                        await asyncio.sleep(0.02)
        finally:
            shutil.rmtree(data, ignore_errors=True)
    raise AssertionError("unreachable")


async def main_async(stores: list[str], rounds: int) -> None:
    for store in stores:
        print(f"== {store}", flush=True)
        for keyed in (False, True):
            empty = [await claim_cost(store, backlog=False, keyed=keyed) for _ in range(rounds)]
            full = [await claim_cost(store, backlog=True, keyed=keyed) for _ in range(rounds)]
            e = statistics.median(r["per_claim_ms"] for r in empty)
            f = statistics.median(r["per_claim_ms"] for r in full)
            label = "own key (never full)" if keyed else "no key"
            print(f"claim cost, runs with {label}: empty {e:.3f} ms, 100k backlog / 10k keys "
                  f"{f:.3f} ms per claim of 64 -> ratio {f / e:.2f} (target <= 1.5)", flush=True)
        none, limited = [], []
        for _ in range(rounds):
            none.append(await end_to_end(store, limit=None))
            limited.append(await end_to_end(store, limit=100_000))
        a, b = statistics.median(none), statistics.median(limited)
        print(f"end to end, 4,000 tasks: no limit {a:,.0f}/s, limit never reached "
              f"{b:,.0f}/s -> ratio {b / a:.2f} (target >= 0.9)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3, help="median of this many runs")
    args = parser.parse_args()
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    asyncio.run(main_async(stores, args.rounds))


if __name__ == "__main__":
    main()

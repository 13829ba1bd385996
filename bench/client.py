"""Client-side figures: offload.Client / offload.AsyncClient beside raw keep-alive requests.

    .venv/bin/python bench/client.py --url http://127.0.0.1:8288 --api-key KEY \
        [--rounds 5] [--calls 400] [--conns 32] [--seconds 3] [--enqueue 20000]

Runs in its own process on the default asyncio loop (what users get), against an
engine that is already up (``bench/run.py --client`` starts a fresh ``offload serve``
per store and calls this). Prints one JSON object:

- ``latency``: one call at a time, ``--rounds`` interleaved rounds of ``--calls`` each
  of raw (hand-written request bytes on one keep-alive connection, bench/rawhttp.py),
  ``AsyncClient.create_task`` and ``Client.create_task``; p50/p99 over all calls and
  the overhead of each client over raw (median over rounds of p50 − raw p50).
- ``rate``: one call per task from this one process, ``--conns`` at once for
  ``--seconds``: raw connections, AsyncClient coroutines, Client threads.
- ``enqueue``: ``--enqueue`` tasks through ``AsyncClient.enqueue`` (batching producer),
  from the first call until every future is settled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, os.environ.get("BENCH_CLIENT_SRC") or str(BENCH.parent / "src"))
"""BENCH_CLIENT_SRC: import offload from another tree (e.g. the previous client)."""

from rawhttp import RawConn  # noqa: E402

from offload import AsyncClient, Client  # noqa: E402

TASK: dict[str, Any] = {"url": "https://example.com/hook", "body": {"n": 1}, "delay": 3600}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


class Raw:
    """Pre-built raw requests with the API key, on bench/rawhttp.py connections."""

    def __init__(self, url: str, api_key: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        body = json.dumps({"url": TASK["url"], **{k: v for k, v in TASK.items()
                                                  if k != "url"}}).encode()
        self.request = (b"POST /v1/tasks HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s"
                        b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                        % (self.host.encode(), self.port, api_key.encode(), len(body), body))

    async def conn(self) -> RawConn:
        return await RawConn(self.host, self.port).connect()


async def raw_calls(raw: Raw, n: int) -> list[float]:
    conn = await raw.conn()
    out = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            status, answer = await conn.send_raw(raw.request)
            out.append((time.perf_counter() - t) * 1000)
            if status != 202:
                raise RuntimeError(f"raw: {status} {answer[:200]!r}")
    finally:
        await conn.close()
    return out


async def async_calls(client: AsyncClient, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await client.create_task(**TASK)
        out.append((time.perf_counter() - t) * 1000)
    return out


def sync_calls(client: Client, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        client.create_task(**TASK)
        out.append((time.perf_counter() - t) * 1000)
    return out


async def latency(url: str, key: str, raw: Raw, rounds: int, calls: int) -> dict[str, Any]:
    """Sequential calls; wall p50s, and this process's CPU per call (``process_time``),
    which a loaded machine disturbs far less than wall time."""
    lat: dict[str, list[float]] = {"raw": [], "async": [], "sync": []}
    cpu: dict[str, list[float]] = {"raw": [], "async": [], "sync": []}
    per_round: dict[str, list[float]] = {"async": [], "sync": []}
    async with AsyncClient(url, api_key=key) as aclient:
        with Client(url, api_key=key) as sclient:
            await raw_calls(raw, 50)
            await async_calls(aclient, 50)
            sync_calls(sclient, 50)
            for _ in range(rounds):
                c0 = time.process_time()
                r = await raw_calls(raw, calls)
                c1 = time.process_time()
                a = await async_calls(aclient, calls)
                c2 = time.process_time()
                s = sync_calls(sclient, calls)  # blocks the loop: nothing else runs
                c3 = time.process_time()
                for name, spent in (("raw", c1 - c0), ("async", c2 - c1), ("sync", c3 - c2)):
                    cpu[name].append(spent * 1000 / calls)
                lat["raw"] += r
                lat["async"] += a
                lat["sync"] += s
                per_round["async"].append(pct(a, 50) - pct(r, 50))
                per_round["sync"].append(pct(s, 50) - pct(r, 50))
    out: dict[str, Any] = {k: {"p50": pct(v, 50), "p99": pct(v, 99),
                               "cpu_ms_per_call": statistics.median(cpu[k])}
                           for k, v in lat.items()}
    for k, v in per_round.items():
        out[k]["overhead_p50"] = statistics.median(v)
        out[k]["overhead_range"] = [min(v), max(v)]
        out[k]["ratio_p50"] = out[k]["p50"] / out["raw"]["p50"]
        out[k]["cpu_overhead_ms"] = out[k]["cpu_ms_per_call"] - out["raw"]["cpu_ms_per_call"]
    return out


async def rate_raw(raw: Raw, conns: int, seconds: float) -> float:
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        conn = await raw.conn()
        while time.perf_counter() < stop:
            status, _ = await conn.send_raw(raw.request)
            if status != 202:
                raise RuntimeError(f"raw: {status}")
            done += 1
        await conn.close()

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conns)))
    return done / (time.perf_counter() - t)


async def rate_async(url: str, key: str, conns: int, seconds: float) -> float:
    done = 0
    stop = time.perf_counter() + seconds
    async with AsyncClient(url, api_key=key) as client:
        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                await client.create_task(**TASK)
                done += 1

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conns)))
        return done / (time.perf_counter() - t)


def rate_sync(url: str, key: str, threads: int, seconds: float) -> float:
    counts = [0] * threads
    stop = time.perf_counter() + seconds
    with Client(url, api_key=key) as client:
        def worker(i: int) -> None:
            while time.perf_counter() < stop:
                client.create_task(**TASK)
                counts[i] += 1

        t = time.perf_counter()
        pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for th in pool:
            th.start()
        for th in pool:
            th.join()
        return sum(counts) / (time.perf_counter() - t)


async def enqueue(url: str, key: str, n: int) -> dict[str, float]:
    async with AsyncClient(url, api_key=key) as client:
        t = time.perf_counter()
        futures = []
        for i in range(n):
            futures.append(client.enqueue(**TASK))
            if i % 1000 == 999:
                await asyncio.sleep(0)  # let batches go out while producing
        await client.flush()
        elapsed = time.perf_counter() - t
        failed = sum(1 for f in futures if f.exception() is not None)
    return {"rate": n / elapsed, "failed": failed}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    raw = Raw(args.url, args.api_key)
    out: dict[str, Any] = {}
    out["latency"] = await latency(args.url, args.api_key, raw, args.rounds, args.calls)
    rates: dict[str, list[float]] = {"raw": [], "async": [], "sync": []}
    for _ in range(args.rate_rounds):
        rates["raw"].append(await rate_raw(raw, args.conns, args.seconds))
        rates["async"].append(await rate_async(args.url, args.api_key, args.conns, args.seconds))
        rates["sync"].append(await asyncio.to_thread(rate_sync, args.url, args.api_key,
                                                     args.threads, args.seconds))
    out["rate"] = {k: {"median": statistics.median(v), "range": [min(v), max(v)]}
                   for k, v in rates.items()}
    out["rate"]["async_over_raw"] = out["rate"]["async"]["median"] / out["rate"]["raw"]["median"]
    if args.enqueue and hasattr(AsyncClient, "enqueue"):
        out["enqueue"] = await enqueue(args.url, args.api_key, args.enqueue)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rate-rounds", type=int, default=2)
    parser.add_argument("--conns", type=int, default=32)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--enqueue", type=int, default=20000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args))))


if __name__ == "__main__":
    main()

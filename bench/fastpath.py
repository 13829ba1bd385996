"""The ingest fast path against FastAPI's route and a trivial Starlette handler, one run.

    .venv/bin/python bench/fastpath.py [--store sqlite|postgres] [--mode serve|dev]
                                       [--rounds 3] [--seconds 4]

One fresh ``offload serve`` (API key, event key; or ``offload dev``) and
bench/baseline.py. Each round
measures, interleaved, with closed-loop raw keep-alive connections from 2 loadgen
processes (bench/loadgen.py): concurrency 32 throughput and sequential p50 of

- ``POST /v1/tasks`` (taken by the fast path) and ``POST /v1/tasks?via=full`` (a query
  string: the fast path steps aside and FastAPI's route answers, the pre-fast-path way);
- ``POST /e/{key}`` and ``/e/{key}?via=full`` (what the SDKs' ``send`` calls);
- the Starlette baseline.

Prints medians over rounds with ranges, and the ratios to the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run as runner  # noqa: E402
from rawhttp import RawConn, install_uvloop  # noqa: E402

EVENT_KEY = "evkey-bench-0123456789"


def _request(port: int, path: str, body: bytes, auth: bool) -> bytes:
    head = b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % (path.encode(), port)
    if auth:
        head += b"Authorization: Bearer %s\r\n" % runner.BENCH_KEY.encode()
    return head + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body), body)


async def sequential(port: int, request: bytes, n: int = 1000) -> float:
    conn = await RawConn("127.0.0.1", port).connect()
    lat = []
    try:
        for i in range(n + 100):
            t = time.perf_counter()
            status, answer = await conn.send_raw(request)
            if status >= 300:
                raise RuntimeError(f"{status} {answer[:200]!r}")
            if i >= 100:
                lat.append((time.perf_counter() - t) * 1000)
    finally:
        await conn.close()
    return runner.pct(lat, 50)


async def load(port: int, path: str, body: bytes, seconds: float, conns: int,
               scratch: Path) -> float:
    """2 loadgen processes x ``conns`` connections, closed loop, POSTing ``body`` to
    ``path``; answers per second."""
    body_file = scratch / f"body-{abs(hash(body))}.json"
    body_file.write_bytes(body)
    start_at = time.time() + 1.0
    procs = [await asyncio.create_subprocess_exec(
        runner.PY, str(BENCH / "loadgen.py"), "--port", str(port), "--path", path,
        "--body-file", str(body_file), "--conns", str(conns), "--start-at", repr(start_at),
        "--warmup", "0.5", "--duration", str(seconds),
        "--header", f"Authorization: Bearer {runner.BENCH_KEY}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE) for _ in range(2)]
    ok = 0
    for p in procs:
        out, err = await p.communicate()
        if p.returncode != 0:
            raise RuntimeError(err.decode()[-1000:])
        result = json.loads(out)
        ok += result["ok"]
        if result["errors"]:
            raise RuntimeError(f"errors: {result['statuses']}")
    return ok / seconds


async def concurrent(port: int, request: bytes, seconds: float, scratch: Path) -> float:
    """32 connections over 2 loadgen processes, closed loop; answers per second."""
    head, _, body = request.partition(b"\r\n\r\n")
    return await load(port, head.split(b" ")[1].decode(), body, seconds, 16, scratch)


async def main_async(args: argparse.Namespace) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="fastpath-"))
    logs = scratch / "logs"
    logs.mkdir()
    bport = runner.free_port()
    baseline = runner.Proc("baseline", [runner.PY, str(BENCH / "baseline.py"), "--port",
                                        str(bport)], bport, logs)
    task = json.dumps({"url": "https://example.com/hook", "body": {"n": 1},
                       "delay": 3600}).encode()
    event = json.dumps({"name": "bench/event", "data": {"n": 1}}).encode()
    figures: dict[str, dict[str, list[float]]] = {}
    try:
        await baseline.ready("/healthz")
        with runner.fresh_database(args.store, scratch, "fastpath") as db:
            async with runner.engine(db, logs, "fastpath", serve=args.mode == "serve",
                                     env={"OFFLOAD_EVENT_KEYS": EVENT_KEY}) as eng:
                cases = {
                    "POST /v1/tasks (fast path)": (eng.port, "/v1/tasks", task),
                    "POST /v1/tasks (FastAPI route)": (eng.port, "/v1/tasks?via=full", task),
                    "POST /e/{key} (fast path)": (eng.port, f"/e/{EVENT_KEY}", event),
                    "POST /e/{key} (FastAPI route)": (eng.port, f"/e/{EVENT_KEY}?via=full",
                                                      event),
                    "Starlette baseline": (bport, "/v1/tasks", task),
                }
                for rnd in range(args.rounds):
                    for name, (port, path, body) in cases.items():
                        request = _request(port, path, body, auth=True)
                        seq = await sequential(port, request)
                        c32 = await concurrent(port, request, args.seconds, scratch)
                        f = figures.setdefault(name, {"p50": [], "c32": []})
                        f["p50"].append(seq)
                        f["c32"].append(c32)
                        print(f"[{rnd}] {name}: p50 {seq:.3f} ms, c32 {c32:,.0f}/s", flush=True)
    finally:
        baseline.stop()
    base = statistics.median(figures["Starlette baseline"]["c32"])
    print(f"\noffload {args.mode}, store {args.store}, {args.rounds} rounds, medians "
          "(ranges)\n")
    print("| endpoint | sequential p50 (ms) | c32 (req/s) | c32 / Starlette |")
    print("| --- | --- | --- | --- |")
    for name, f in figures.items():
        p50, c32 = f["p50"], f["c32"]
        print(f"| {name} | {statistics.median(p50):.3f} ({min(p50):.3f}–{max(p50):.3f}) | "
              f"{statistics.median(c32):,.0f} ({min(c32):,.0f}–{max(c32):,.0f}) | "
              f"{statistics.median(c32) / base:.2f}× |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--mode", choices=["serve", "dev"], default="serve",
                        help="serve: API key, fsync on every commit; dev: no key, no fsync "
                             "wait (what bench/run.py measures).")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    install_uvloop()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()

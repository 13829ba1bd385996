"""Inbound webhook ack latency beside HTTP-task ack latency, on the same engine.

    .venv/bin/python bench/webhooks.py [--store sqlite|postgres|both] [--n 2000]

Starts ``offload dev`` (bench/run.py's helpers: a fresh database per store), creates
a Stripe webhook, and times sequential requests on one keep-alive connection:

* ``POST /v1/tasks`` with a delayed task (the ``ack_p50`` scenario of bench/run.py);
* ``POST /w/{id}`` with a Stripe-signed ``invoice.paid`` event (a new event id each
  time, so every request is verified and written, never a cheap duplicate);
* ``POST /w/{id}`` of a webhook with ``forward`` (event + HTTP task in the same write).

The two are interleaved in rounds so machine noise hits both alike. The goal (issue
12): webhook ack p50 within 1.5x of the task ack p50.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rawhttp import RawConn  # noqa: E402
from run import engine, fresh_database, pct  # noqa: E402

SECRET = "whsec_bench_secret_0123456789"  # noqa: S105
ROUNDS = 4


def stripe_request(conn: RawConn, path: str, n: int) -> bytes:
    body = orjson.dumps({"id": f"evt_bench_{n}_{time.time_ns()}", "object": "event",
                         "type": "invoice.paid", "data": {"object": {"id": f"in_{n}",
                                                                     "amount_paid": 1999}}})
    t = int(time.time())
    sig = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    head = (f"POST {path} HTTP/1.1\r\nHost: {conn.host}:{conn.port}\r\n"
            "Content-Type: application/json\r\nUser-Agent: Stripe/1.0\r\n"
            f"Stripe-Signature: t={t},v1={sig}\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def timed(conn: RawConn, requests: list[bytes], expect: int) -> list[float]:
    out: list[float] = []
    for request in requests:
        started = time.perf_counter()
        status, answer = await conn.send_raw(request)
        out.append((time.perf_counter() - started) * 1000)
        if status != expect:
            raise RuntimeError(f"{status}: {answer[:300]!r}")
    return out


async def measure(store: str, n: int, scratch: Path) -> dict[str, Any]:
    logs = scratch / "logs"
    logs.mkdir(exist_ok=True)
    with fresh_database(store, scratch, "webhooks") as db:
        async with engine(db, logs, "webhooks") as eng:
            base = f"http://127.0.0.1:{eng.port}"
            plain = httpx.post(f"{base}/v1/webhooks", json={
                "name": "bench", "verify": {"kind": "stripe", "secret": SECRET}}).json()
            forward = httpx.post(f"{base}/v1/webhooks", json={
                "name": "bench-forward", "verify": {"kind": "stripe", "secret": SECRET},
                "forward": {"url": "http://127.0.0.1:9/hook", "delay": 3600}}).json()
            conn = await RawConn("127.0.0.1", eng.port).connect()
            task = conn.build("POST", "/v1/tasks", orjson.dumps(
                {"url": "http://127.0.0.1:9/x", "method": "POST", "body": {"n": 1},
                 "delay": 3600}))
            per = max(1, n // ROUNDS)
            results: dict[str, list[float]] = {"task": [], "webhook": [], "forward": []}
            try:
                # warm-up: every path once per round's size / 10
                await timed(conn, [task] * 100, 202)
                await timed(conn, [stripe_request(conn, plain["url"], i) for i in range(100)],
                            200)
                await timed(conn, [stripe_request(conn, forward["url"], i)
                                   for i in range(100)], 200)
                for r in range(ROUNDS):
                    results["task"] += await timed(conn, [task] * per, 202)
                    results["webhook"] += await timed(
                        conn, [stripe_request(conn, plain["url"], r * per + i)
                               for i in range(per)], 200)
                    results["forward"] += await timed(
                        conn, [stripe_request(conn, forward["url"], r * per + i)
                               for i in range(per)], 200)
            finally:
                await conn.close()
    out: dict[str, Any] = {"store": store, "n": per * ROUNDS}
    for key, values in results.items():
        out[f"{key}_p50"] = pct(values, 50)
        out[f"{key}_p99"] = pct(values, 99)
    out["ratio_p50"] = out["webhook_p50"] / out["task_p50"]
    out["ratio_forward_p50"] = out["forward_p50"] / out["task_p50"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--n", type=int, default=2000, help="Requests of each kind timed.")
    args = parser.parse_args()
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    with tempfile.TemporaryDirectory(prefix="offload-bench-webhooks-") as tmp:
        rows = [asyncio.run(measure(store, args.n, Path(tmp))) for store in stores]
    print("| metric (ms, sequential, 1 keep-alive conn) | " +
          " | ".join(r["store"] for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for key, label in (("task_p50", "POST /v1/tasks ack p50"),
                       ("task_p99", "POST /v1/tasks ack p99"),
                       ("webhook_p50", "POST /w/{id} ack p50 (Stripe, event only)"),
                       ("webhook_p99", "POST /w/{id} ack p99 (Stripe, event only)"),
                       ("forward_p50", "POST /w/{id} ack p50 (Stripe, event + forward task)"),
                       ("forward_p99", "POST /w/{id} ack p99 (Stripe, event + forward task)")):
        print(f"| {label} | " + " | ".join(f"{r[key]:.2f}" for r in rows) + " |")
    for key, label in (("ratio_p50", "ratio webhook/task p50 (goal ≤ 1.5)"),
                       ("ratio_forward_p50", "ratio webhook+forward/task p50 (goal ≤ 1.5)")):
        print(f"| {label} | " + " | ".join(
            f"{r[key]:.2f}x {'PASS' if r[key] <= 1.5 else 'MISS'}" for r in rows) + " |")


if __name__ == "__main__":
    main()

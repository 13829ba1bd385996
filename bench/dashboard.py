"""Dashboard and runs API with a million runs: how long each page takes to answer.

Fills a fresh SQLite database (or a fresh PostgreSQL database) with N runs spread over
functions, statuses and queues and the last 24 hours, starts ``offload dev`` on it and
times the pages an operator opens: the runs list (first page, filtered, deep cursor),
the failed view, the overview, /metrics, and GET /v1/runs.

    .venv/bin/python bench/dashboard.py [--runs 1000000] [--store sqlite|postgres]
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
STATUSES = ["completed"] * 85 + ["failed"] * 8 + ["cancelled"] * 2 + ["queued"] * 5
FUNCTIONS = ["http"] + [f"shop-fn-{i}" for i in range(20)]


def ulid_at(ms: int) -> str:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(alphabet[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def rows(n: int) -> list[tuple[object, ...]]:
    now = int(time.time() * 1000)
    out = []
    for _ in range(n):
        created = now - random.randint(0, 24 * 3600 * 1000)
        status = random.choice(STATUSES)
        ended = created + random.randint(5, 5000) if status != "queued" else None
        error = '{"name": "HTTPStatusError", "message": "answered 500"}' \
            if status == "failed" else None
        out.append((ulid_at(created), None, random.choice(FUNCTIONS), status, 1, "[]",
                    '{"url": "https://example.com"}', None, error,
                    random.choice(["default", "emails", "billing"]), None, None, None, "{}",
                    created, created + 3, ended, ended or created))
    return out


def migrate(url: str, data_dir: Path) -> None:
    subprocess.run([sys.executable, "-m", "offload", "migrate", "--database-url", url,
                    "--data-dir", str(data_dir)], check=True, capture_output=True)


def fill(url: str, n: int) -> None:
    cols = ("id, app_id, function_id, status, attempt, event_ids, input, output, error, "
            "queue, correlation_id, replay_of, idempotency_key, state, created_at, "
            "started_at, ended_at, updated_at")
    batch = 50_000
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        for start in range(0, n, batch):
            conn.executemany(f"INSERT INTO runs ({cols}) VALUES ({', '.join('?' * 18)})",
                             rows(min(batch, n - start)))
            conn.commit()
        conn.execute("ANALYZE")
        conn.commit()
        conn.close()
        return
    import psycopg

    with psycopg.connect(url) as conn:
        with conn.cursor() as cur:
            for start in range(0, n, batch):
                with cur.copy(f"COPY runs ({cols}) FROM STDIN") as copy:
                    for row in rows(min(batch, n - start)):
                        copy.write_row(row)
        conn.execute("ANALYZE runs")


def timed(client: httpx.Client, path: str, repeat: int = 5) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        r = client.get(path)
        samples.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
    return statistics.median(samples), max(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="offload-dash-"))
    db_name = None
    if args.store == "sqlite":
        url = f"sqlite:///{tmp / 'offload.db'}"
    else:
        import psycopg

        db_name = f"bench_{secrets.token_hex(4)}"
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres",
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {db_name}")
        url = f"postgresql://postgres@127.0.0.1:5432/{db_name}"
    try:
        migrate(url, tmp)
        started = time.perf_counter()
        fill(url, args.runs)
        print(f"filled {args.runs:,} runs into {args.store} in "
              f"{time.perf_counter() - started:.0f} s")
        port = 18000 + random.randint(0, 999)
        engine = subprocess.Popen([sys.executable, "-m", "offload", "dev", "--port", str(port),
                                   "--data-dir", str(tmp), "--database-url", url],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
            for _ in range(200):
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            deep = client.get("/v1/runs", params={"limit": 500}).json()
            for _ in range(20):
                deep = client.get("/v1/runs", params={"limit": 500,
                                                      "cursor": deep["next_cursor"]}).json()
            cursor = deep["next_cursor"]
            pages = [
                ("/runs (first page)", "/runs"),
                ("/runs?status=failed", "/runs?status=failed"),
                ("/runs?function=shop-fn-3&status=failed",
                 "/runs?function_id=shop-fn-3&status=failed"),
                ("/runs deep cursor (10,500 rows in)", f"/runs?cursor={cursor}"),
                ("/failed", "/failed"),
                ("/ (overview)", "/"),
                ("/queues", "/queues"),
                ("/metrics", "/metrics"),
                ("GET /v1/runs?limit=50", "/v1/runs?limit=50"),
                ("GET /v1/runs?status=failed&queue=billing",
                 "/v1/runs?status=failed&queue=billing"),
            ]
            print(f"| page ({args.runs:,} runs, {args.store}) | median ms | max ms |")
            print("| --- | --- | --- |")
            for label, path in pages:
                median, worst = timed(client, path)
                print(f"| {label} | {median:.1f} | {worst:.1f} |")
        finally:
            engine.kill()
            engine.wait()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if db_name:
            import psycopg

            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres",
                                 autocommit=True) as conn:
                conn.execute(f"DROP DATABASE {db_name} WITH (FORCE)")


if __name__ == "__main__":
    main()

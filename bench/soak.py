"""Soak: hours-long mixed load on one engine; resources and queue lag must stay flat.

Starts ``offload dev`` on a fresh database (SQLite or PostgreSQL), bench/target.py (a
no-op HTTP target) and bench/fn_app.py (the official ``inngest`` SDK, one 3-step
function), then keeps a steady mixed load for ``--minutes``: HTTP tasks (some
delayed, some retried through a 503 first) and events starting durable runs, while
purging nothing by hand (retention runs as configured). Every ``--every`` seconds it
samples the engine process:

* resident memory (RSS) and open file descriptors (``/proc`` via psutil);
* TCP connections of the engine, and (PostgreSQL) the server's connections to the
  database;
* queue lag: age of the oldest due, unclaimed queue item, and the backlog (items due
  and unclaimed), read straight from the database.

It writes the samples as CSV and a PNG (matplotlib, ``pip install offload[bench]``),
and prints a summary: first and last sample, maximum, and the least-squares slope over
the second half (a leak shows as a steady positive slope). Not part of CI.

    .venv/bin/python bench/soak.py --minutes 30 --store sqlite --out bench/soak-sqlite
"""

from __future__ import annotations

import argparse
import csv
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

BENCH = Path(__file__).resolve().parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
FIELDS = ("t_s", "rss_mb", "fds", "tcp_conns", "db_conns", "lag_s", "backlog", "completed")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


class Database:
    """Reads queue lag and connection counts straight from the engine's database."""

    def __init__(self, url: str, db_name: str | None) -> None:
        self.url = url
        self.db_name = db_name

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.db_name is None:
            path = self.url.removeprefix("sqlite:///")
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
                return conn.execute(sql, params).fetchall()
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql.replace("?", "%s"), params).fetchall()

    def lag(self) -> tuple[float, int]:
        now_ms = int(time.time() * 1000)
        oldest, backlog = self._rows(
            "SELECT MIN(due_at), COUNT(*) FROM queue_items WHERE lease_owner IS NULL "
            "AND due_at <= ?", (now_ms,))[0]
        return ((now_ms - int(oldest)) / 1000 if oldest is not None else 0.0), int(backlog)

    def connections(self) -> int:
        if self.db_name is None:
            return 0
        return int(self._rows("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = ?",
                              (self.db_name,))[0][0]) - 1  # this sampler's own

    def completed(self) -> int:
        return int(self._rows("SELECT COUNT(*) FROM runs WHERE status = 'completed'")[0][0])


def load(url: str, target: str, rate: float, stop: threading.Event,
         refused: dict[str, int]) -> None:
    """``rate`` requests per second: 3 of 4 a task, 1 of 4 an event starting a run."""
    n = 0
    with httpx.Client(base_url=url, timeout=30) as client:
        next_at = time.monotonic()
        while not stop.is_set():
            n += 1
            try:
                if n % 4 == 0:
                    r = client.post("/e/soak", json={"name": "bench/go", "data": {"n": n}})
                else:
                    task: dict[str, Any] = {"url": f"{target}/hit", "body": {"k": n}}
                    if n % 10 == 1:
                        task["delay"] = 30
                    r = client.post("/v1/tasks", json=task)
                if r.status_code not in (200, 202):
                    refused[str(r.status_code)] = refused.get(str(r.status_code), 0) + 1
            except httpx.HTTPError as exc:
                refused[type(exc).__name__] = refused.get(type(exc).__name__, 0) + 1
            next_at += 1 / rate
            time.sleep(max(0.0, next_at - time.monotonic()))


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (per minute when xs are minutes)."""
    if len(xs) < 2:
        return 0.0
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def plot(rows: list[dict[str, float]], png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [r["t_s"] / 60 for r in rows]
    panels = [("rss_mb", "engine RSS (MB)"), ("fds", "open file descriptors"),
              ("tcp_conns", "engine TCP connections"), ("db_conns", "database connections"),
              ("lag_s", "queue lag: oldest due item (s)"), ("backlog", "due, unclaimed items")]
    fig, axes = plt.subplots(3, 2, figsize=(11, 9), sharex=True)
    for ax, (key, label) in zip(axes.flat, panels, strict=True):
        ax.plot(minutes, [r[key] for r in rows], linewidth=1)
        ax.set_title(label, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("minutes")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--out", type=Path, default=BENCH / "soak",
                        help="writes <out>.csv and <out>.png")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="offload-soak-"))
    db_name = None
    if args.store == "sqlite":
        url = f"sqlite:///{scratch / 'offload.db'}"
    else:
        import psycopg

        db_name = f"soak_{secrets.token_hex(4)}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {db_name}")
        url = f"postgresql://postgres@127.0.0.1:5432/{db_name}"
    port, target_port, app_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INNGEST_", "OFFLOAD_"))}
    env["OFFLOAD_LOG_LEVEL"] = "warning"
    engine = subprocess.Popen(
        [sys.executable, "-m", "offload", "dev", "--port", str(port), "--data-dir",
         str(scratch), "--database-url", url], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = subprocess.Popen([sys.executable, str(BENCH / "target.py"), "--port",
                               str(target_port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    app = subprocess.Popen([sys.executable, str(BENCH / "fn_app.py"), "--port", str(app_port)],
                           env={**env, "INNGEST_DEV": f"http://127.0.0.1:{port}"},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop = threading.Event()
    refused: dict[str, int] = {}
    rows: list[dict[str, float]] = []
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz")
        wait_http(f"http://127.0.0.1:{target_port}/stats")
        wait_http(f"http://127.0.0.1:{app_port}/api/inngest")
        synced = httpx.post(f"{base}/v1/apps", timeout=60,
                            json={"url": f"http://127.0.0.1:{app_port}/api/inngest"})
        assert synced.status_code == 200, synced.text
        proc = psutil.Process(engine.pid)
        db = Database(url, db_name)
        loader = threading.Thread(target=load, args=(
            base, f"http://127.0.0.1:{target_port}", args.rate, stop, refused), daemon=True)
        began = time.monotonic()
        loader.start()
        end = began + args.minutes * 60
        while time.monotonic() < end:
            lag, backlog = db.lag()
            row = {"t_s": round(time.monotonic() - began, 1),
                   "rss_mb": round(proc.memory_info().rss / 2**20, 1),
                   "fds": proc.num_fds(), "tcp_conns": len(proc.net_connections("tcp")),
                   "db_conns": db.connections(), "lag_s": round(lag, 3), "backlog": backlog,
                   "completed": db.completed()}
            rows.append(row)
            print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
            time.sleep(args.every)
        stop.set()
        loader.join(30)
    finally:
        stop.set()
        for p in (app, target, engine):
            p.send_signal(signal.SIGTERM)
        for p in (app, target, engine):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    title = (f"offload soak: {args.store}, {args.rate:g} req/s mixed, "
             f"{args.minutes:g} min")
    plot(rows, args.out.with_suffix(".png"), title)
    half = rows[len(rows) // 2:]
    print(f"\n{title}; refused or failed requests: {refused or 'none'}")
    print("| metric | first | last | max | slope, 2nd half (per min) |")
    print("|---|---|---|---|---|")
    for key in FIELDS[1:-1]:
        values = [r[key] for r in rows]
        s = slope([r["t_s"] / 60 for r in half], [r[key] for r in half])
        print(f"| {key} | {values[0]} | {values[-1]} | {max(values)} | {s:+.3f} |")
    print(f"| runs completed | | {rows[-1]['completed']} | | |")


if __name__ == "__main__":
    main()

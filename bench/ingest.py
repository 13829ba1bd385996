"""Server-side ingest, two source trees side by side (issue 10): ``offload serve`` (API
key, fsync) on each store, fed by closed-loop raw keep-alive connections.

    .venv/bin/python bench/ingest.py BEFORE_SRC AFTER_SRC [--store sqlite|postgres]
                                     [--rounds 3] [--seconds 3] [--profile DIR]
                                     [--batch 100]

Per round and tree, interleaved: sequential ack p50 of ``POST /v1/tasks`` (one task),
c32 answers/s of ``POST /v1/tasks`` (2 loadgen processes x 16 connections) and tasks/s of
``POST /v1/tasks/batch`` (100 tasks a request, 8 connections). Tasks carry a one-hour
delay so nothing runs meanwhile: only the ingest path is measured. ``--events`` measures
``POST /e/{key}`` (one event, no function triggered by it: its fan-out item is claimed
and dropped) for ack p50 and c32 instead, no batch. ``--profile`` records
py-spy (raw collapsed stacks) of the AFTER engine during its c32 and batch windows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run as runner  # noqa: E402
from fastpath import _request, load, sequential  # noqa: E402
from rawhttp import install_uvloop  # noqa: E402

TASK = {"url": "https://example.com/hook", "body": {"n": 1}, "delay": 3600}
BATCH = 100
EVENT_KEY = "evkey-bench-0123456789abcdef"
EVENT = {"name": "bench/ingest", "data": {"n": 1}}


async def main_async(args: argparse.Namespace) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="ingest-"))
    logs = scratch / "logs"
    logs.mkdir()
    path = f"/e/{EVENT_KEY}" if args.events else "/v1/tasks"
    one = json.dumps(EVENT if args.events else TASK).encode()
    env = {"OFFLOAD_EVENT_KEYS": EVENT_KEY} if args.events else {}
    batch = args.batch
    many = json.dumps({"tasks": [TASK] * batch}).encode()
    trees = {"before": args.before, "after": args.after}
    figures: dict[str, dict[str, list[float]]] = {t: {"p50": [], "c32": [], "batch": []}
                                                  for t in trees}
    for rnd in range(args.rounds):
        for tree, src in trees.items():
            runner.ENGINE_PYTHONPATH = str(Path(src).resolve())
            with runner.fresh_database(args.store, scratch, f"ingest-{tree}") as db:
                async with runner.engine(db, logs, tree, serve=True, env=env) as eng:
                    f = figures[tree]
                    f["p50"].append(await sequential(eng.port, _request(
                        eng.port, path, one, auth=True)))
                    spy = Path(args.profile) if args.profile and tree == "after" else None
                    with runner.py_spy(eng, spy, f"{args.store}-c32-{rnd}", args.seconds + 1.5):
                        f["c32"].append(await load(eng.port, path, one, args.seconds,
                                                   16, scratch))
                    if args.events:
                        f["batch"].append(0.0)
                    else:
                        with runner.py_spy(eng, spy, f"{args.store}-batch-{rnd}",
                                           args.seconds + 1.5):
                            f["batch"].append(batch * await load(
                                eng.port, "/v1/tasks/batch", many, args.seconds, 4, scratch))
            print(f"[{rnd}] {tree}: p50 {f['p50'][-1]:.3f} ms, c32 {f['c32'][-1]:,.0f}/s, "
                  f"batch {f['batch'][-1]:,.0f} tasks/s  (load {os.getloadavg()[0]:.1f})",
                  flush=True)
    print(f"\nstore {args.store}, offload serve, {args.rounds} rounds, medians (ranges)\n")
    print(f"| tree | ack p50 (ms) | c32 (req/s) | batch x{batch} (tasks/s) |")
    print("| --- | --- | --- | --- |")
    for tree, f in figures.items():
        cells = []
        for key, fmt in (("p50", "{:.3f}"), ("c32", "{:,.0f}"), ("batch", "{:,.0f}")):
            v = f[key]
            cells.append(f"{fmt.format(statistics.median(v))} ({fmt.format(min(v))}–"
                         f"{fmt.format(max(v))})")
        print(f"| {tree} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--profile", default="")
    parser.add_argument("--batch", type=int, default=BATCH, help="tasks per batch request")
    parser.add_argument("--events", action="store_true", help="POST /e/{key}, not tasks")
    args = parser.parse_args()
    install_uvloop()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()

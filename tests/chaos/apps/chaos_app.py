"""The durable functions of the chaos suite, on the official ``inngest`` Python SDK.

Run: ``python tests/chaos/apps/chaos_app.py --port N`` with ``INNGEST_DEV=<engine url>``.
Every step body counts its executions per run (``GET /counts``: repeated executions
are the duplicate deliveries the suite reports), and the concurrency-limited step
records how many of its executions overlapped (``GET /overlap``: must never exceed
the limit).
"""

from __future__ import annotations

import argparse
import datetime
import logging
import threading
import time
from collections import Counter
from typing import Any

import inngest

client = inngest.Inngest(app_id="chaos", logger=logging.getLogger("chaos_app"))
LIMIT = 2
CRONS = 5

_lock = threading.Lock()
COUNTS: Counter[str] = Counter()
ACTIVE = {"now": 0, "max": 0}


def count(run_id: str, step: str) -> int:
    with _lock:
        COUNTS[f"{run_id}/{step}"] += 1
        return COUNTS[f"{run_id}/{step}"]


@client.create_function(fn_id="flow", trigger=inngest.TriggerEvent(event="chaos/flow"),
                        retries=10)
def flow(ctx: inngest.ContextSync) -> Any:
    """Two steps around a sleep and a wait for an event (which may time out)."""
    ctx.step.run("a", lambda: count(ctx.run_id, "a"))
    ctx.step.sleep("nap", datetime.timedelta(seconds=1))
    got = ctx.step.wait_for_event("go", event="chaos/go", if_exp="event.data.k == async.data.k",
                                  timeout=datetime.timedelta(seconds=6))
    ctx.step.run("b", lambda: count(ctx.run_id, "b"))
    return {"k": ctx.event.data.get("k"), "matched": got is not None}


@client.create_function(fn_id="limited", trigger=inngest.TriggerEvent(event="chaos/limited"),
                        concurrency=[inngest.Concurrency(limit=LIMIT)], retries=10)
def limited(ctx: inngest.ContextSync) -> Any:
    """At most LIMIT executions of ``work`` at once, across every engine."""
    def work() -> int:
        with _lock:
            ACTIVE["now"] += 1
            ACTIVE["max"] = max(ACTIVE["max"], ACTIVE["now"])
        try:
            time.sleep(0.1)  # work that lasts, so executions can overlap (ACTIVE["max"])
        finally:
            with _lock:
                ACTIVE["now"] -= 1
        return count(ctx.run_id, "work")
    return ctx.step.run("work", work)


def _cron(i: int) -> Any:
    @client.create_function(fn_id=f"tick-{i}", trigger=inngest.TriggerCron(cron="* * * * *"))
    def tick(ctx: inngest.ContextSync) -> Any:
        return ctx.step.run("t", lambda: count(ctx.run_id, "t"))
    return tick


FUNCTIONS = [flow, limited, *[_cron(i) for i in range(CRONS)]]


def main() -> None:
    import fastapi
    import inngest.fast_api
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = fastapi.FastAPI()

    @app.get("/counts")
    def counts() -> dict[str, int]:
        with _lock:
            return dict(COUNTS)

    @app.get("/overlap")
    def overlap() -> dict[str, int]:
        with _lock:
            return dict(ACTIVE)

    inngest.fast_api.serve(app, client, FUNCTIONS)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

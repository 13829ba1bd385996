"""An official-SDK app whose parents wait on children that never end on their own.

Run: ``python tests/integration/apps/lifecycle_app.py --port N`` with ``INNGEST_DEV=<url>``.
``lc/parent`` invokes the function named in ``data.fn`` (with ``data.child`` as its data
and ``data.timeout`` seconds as the invoke timeout) and returns what the invoke gave it:
``{"result": ...}`` or ``{"error": name, "message": ...}``. Every child sleeps an hour, so
only the run lifecycle (a cancel, a timeout, a lease given up on) can end it.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import threading
from collections import Counter
from typing import Any

import inngest

client = inngest.Inngest(app_id="lcapp", logger=logging.getLogger("lifecycle_app"))
HOUR = datetime.timedelta(hours=1)
_lock = threading.Lock()
COUNTS: Counter[str] = Counter()
RELEASE = threading.Event()
"""Set by ``POST /release``: a ``stuck`` step returns then (its engine is long gone)."""


def ev(name: str) -> inngest.TriggerEvent:
    return inngest.TriggerEvent(event=name)


def nap(ctx: inngest.ContextSync) -> Any:
    ctx.step.sleep("nap", HOUR)
    return "woke up"


@client.create_function(fn_id="sleepy", trigger=ev("lc/sleepy"), retries=0)
def sleepy(ctx: inngest.ContextSync) -> Any:
    return nap(ctx)


@client.create_function(fn_id="sleepy-cancellable", trigger=ev("lc/sleepy-cancellable"),
                        retries=0, cancel=[inngest.Cancel(
                            event="lc/cancel", if_exp="event.data.key == async.data.key")])
def sleepy_cancellable(ctx: inngest.ContextSync) -> Any:
    return nap(ctx)


@client.create_function(fn_id="sleepy-finish", trigger=ev("lc/sleepy-finish"), retries=0,
                        timeouts=inngest.Timeouts(finish=datetime.timedelta(seconds=2)))
def sleepy_finish(ctx: inngest.ContextSync) -> Any:
    return nap(ctx)


@client.create_function(fn_id="sleepy-start", trigger=ev("lc/sleepy-start"), retries=0,
                        throttle=inngest.Throttle(key="event.data.key", limit=1, period=HOUR),
                        timeouts=inngest.Timeouts(start=datetime.timedelta(seconds=2)))
def sleepy_start(ctx: inngest.ContextSync) -> Any:
    return nap(ctx)


@client.create_function(fn_id="stuck", trigger=ev("lc/stuck"), retries=0)
def stuck(ctx: inngest.ContextSync) -> Any:
    def slow() -> str:
        with _lock:
            COUNTS[ctx.run_id] += 1
        RELEASE.wait(60)  # the engine is killed meanwhile: its lease expires
        return "done"

    ctx.step.run("slow", slow)
    return nap(ctx)


@client.create_function(fn_id="parent", trigger=ev("lc/parent"), retries=0)
def parent(ctx: inngest.ContextSync) -> Any:
    data = dict(ctx.event.data)
    timeout = data.get("timeout")
    try:
        result = ctx.step.invoke_by_id(
            "call", function_id=str(data["fn"]), data=data.get("child") or {},
            timeout=datetime.timedelta(seconds=timeout) if timeout else None)
    except inngest.StepError as err:
        return {"error": err.name, "message": err.message}
    return {"result": result}


@client.create_function(fn_id="flaky-once", trigger=ev("lc/flaky-once"), retries=2)
def flaky_once(ctx: inngest.ContextSync) -> Any:
    def attempt() -> str:
        with _lock:
            COUNTS[f"{ctx.run_id}/try"] += 1
            if COUNTS[f"{ctx.run_id}/try"] == 1:
                raise RuntimeError("first attempt fails")
        return "ok"

    return ctx.step.run("try", attempt)


FUNCTIONS = [sleepy, sleepy_cancellable, sleepy_finish, sleepy_start, stuck, parent,
             flaky_once]


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
        return dict(COUNTS)

    @app.post("/release")
    def release() -> dict[str, bool]:
        RELEASE.set()
        return {"released": True}

    inngest.fast_api.serve(app, client, FUNCTIONS)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

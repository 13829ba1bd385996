"""SDK conformance scenarios written with the official, unmodified ``inngest`` Python SDK.

One function per behaviour; tests/integration/test_sdk_conformance_python.py drives them
through offload and states what Inngest does. Run: ``python conformance_app.py --port N``
(FastAPI on uvicorn). The SDK finds offload through its environment (``INNGEST_DEV`` or
``INNGEST_BASE_URL`` + keys). What the functions saw is readable at ``GET /seen``.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import threading
import time
from collections import defaultdict
from typing import Any

import inngest

client = inngest.Inngest(app_id=os.environ.get("APP_ID", "conf-py"),
                         logger=logging.getLogger("conformance_app"))

_lock = threading.Lock()
SEEN: dict[str, list[Any]] = defaultdict(list)
"""``<run id>/<what>`` → values the function recorded, in order."""


def see(run_id: str, what: str, value: Any) -> int:
    """Record ``value``; how many values ``<run_id>/<what>`` holds now."""
    with _lock:
        SEEN[f"{run_id}/{what}"].append(value)
        return len(SEEN[f"{run_id}/{what}"])


def ev(name: str) -> inngest.TriggerEvent:
    return inngest.TriggerEvent(event=name)


@client.create_function(fn_id="child", trigger=ev("conf/never"), retries=0)
def child(ctx: inngest.ContextSync) -> Any:
    if ctx.event.data.get("fail"):
        raise inngest.NonRetriableError("child refused")
    if ctx.event.data.get("sleep"):
        ctx.step.sleep("nap", datetime.timedelta(seconds=float(ctx.event.data["sleep"])))
    return {"n2": int(ctx.event.data.get("n", 0)) * 2}


@client.create_function(fn_id="long-child", trigger=ev("conf/never"), retries=0,
                        cancel=[inngest.Cancel(event="conf/cancel-child",
                                               if_exp="event.data.k == async.data.k")],
                        timeouts=inngest.Timeouts(finish=datetime.timedelta(seconds=30)))
def long_child(ctx: inngest.ContextSync) -> Any:
    """Sleeps an hour; ended by a cancel (API, bulk, ``cancel``) in the tests."""
    ctx.step.sleep("long", datetime.timedelta(hours=1))
    return "woke"


@client.create_function(fn_id="overdue-child", trigger=ev("conf/never"), retries=0,
                        timeouts=inngest.Timeouts(finish=datetime.timedelta(seconds=2)))
def overdue_child(ctx: inngest.ContextSync) -> Any:
    ctx.step.sleep("long", datetime.timedelta(hours=1))
    return "woke"


@client.create_function(fn_id="invoke-ended", trigger=ev("conf/invoke-ended"), retries=0)
def invoke_ended(ctx: inngest.ContextSync) -> Any:
    """Invokes a child that something else ends; reports what the invoke raised."""
    target = overdue_child if ctx.event.data.get("overdue") else long_child
    try:
        ctx.step.invoke("call-child", function=target, data={"k": ctx.event.data.get("k")})
    except inngest.StepError as err:
        return {"name": err.name, "message": err.message}
    return "unreachable"


@client.create_function(fn_id="parallel-mixed", trigger=ev("conf/parallel-mixed"), retries=0)
def parallel_mixed(ctx: inngest.ContextSync) -> Any:
    """A parallel group holding every step kind next to quick ``step.run`` s."""
    group = ctx.group.parallel((
        lambda: ctx.step.run("quick-a", lambda: "a"),
        lambda: ctx.step.invoke("call-child", function=child, data={"n": 4, "sleep": 1}),
        lambda: ctx.step.run("quick-b", lambda: "b"),
        lambda: ctx.step.sleep("nap", datetime.timedelta(seconds=1)),
        lambda: ctx.step.wait_for_event("hold", event="conf/parallel.never",
                                        timeout=datetime.timedelta(seconds=2)),
    ))
    tail = ctx.step.run("after", lambda: "tail")
    return {"group": list(group), "tail": tail}


@client.create_function(fn_id="race", trigger=ev("conf/race"), retries=0)
def race(ctx: inngest.ContextSync) -> Any:
    """Race mode: a discovery call after every finished step (the group still returns
    every result in the Python SDK)."""
    def slow() -> str:
        time.sleep(1.5)  # "fast" finishes first: the order race mode is about
        return "slow"

    group = ctx.group.parallel((
        lambda: ctx.step.run("fast", lambda: "fast"),
        lambda: ctx.step.run("slow", slow),
    ), parallel_mode=inngest.ParallelMode.RACE)
    return {"group": list(group), "tail": ctx.step.run("tail", lambda: "t")}


@client.create_function(fn_id="invoke-fails", trigger=ev("conf/invoke-fails"), retries=0)
def invoke_fails(ctx: inngest.ContextSync) -> Any:
    try:
        ctx.step.invoke("call-child", function=child, data={"fail": True})
    except inngest.StepError as err:
        return {"name": err.name, "message": err.message}
    return "unreachable"


@client.create_function(fn_id="invoke-missing", trigger=ev("conf/invoke-missing"), retries=0)
def invoke_missing(ctx: inngest.ContextSync) -> Any:
    try:
        ctx.step.invoke_by_id("call-nobody", app_id="no-such-app", function_id="missing")
    except inngest.StepError as err:
        return {"name": err.name, "message": err.message}
    return "unreachable"


@client.create_function(fn_id="step-error", trigger=ev("conf/step-error"), retries=0)
def step_error(ctx: inngest.ContextSync) -> Any:
    def broken() -> None:
        raise ValueError("step broke")

    ctx.step.run("broken", broken)


def record_failure(ctx: inngest.ContextSync) -> None:
    see(str(ctx.event.data.get("run_id")), "on_failure", dict(ctx.event.data))


@client.create_function(fn_id="doomed", trigger=ev("conf/doomed"), on_failure=record_failure)
def doomed(ctx: inngest.ContextSync) -> Any:
    raise inngest.NonRetriableError("no way")


@client.create_function(fn_id="retry-history", trigger=ev("conf/retry-history"), retries=3)
def retry_history(ctx: inngest.ContextSync) -> Any:
    def maybe() -> str:
        n = see(ctx.run_id, "attempt", ctx.attempt)
        if n < 3:
            raise ValueError(f"transient {n}")
        return "ok"

    first = ctx.step.run("maybe", maybe)
    second = ctx.step.run("then", lambda: see(ctx.run_id, "then-attempt", ctx.attempt))
    return {"first": first, "then": second}


@client.create_function(fn_id="wildcard", trigger=ev("confwild/*"))
def wildcard(ctx: inngest.ContextSync) -> Any:
    return ctx.event.name


@client.create_function(fn_id="sender", trigger=ev("conf/sender"))
def sender(ctx: inngest.ContextSync) -> Any:
    ids = ctx.step.send_event("send", inngest.Event(name="conf/sent", data={"k": 1}))
    return {"sent": len(ids)}


@client.create_function(fn_id="keyed", trigger=ev("conf/keyed"),
                        concurrency=[inngest.Concurrency(limit=2, key="event.data.user")])
def keyed(ctx: inngest.ContextSync) -> Any:
    return ctx.step.run("work", lambda: "done")


BIG = 1_500_000
"""Characters per big step output: three of them pass the 4 MiB request threshold."""


@client.create_function(fn_id="big-steps", trigger=ev("conf/big-steps"), retries=0)
def big_steps(ctx: inngest.ContextSync) -> Any:
    sizes = []
    for i in range(3):
        out = ctx.step.run(f"big-{i}", lambda i=i: str(i) * BIG)
        sizes.append(len(out))
    tail = ctx.step.run("tail", lambda: "small")
    return {"sizes": sizes, "tail": tail}


@client.create_function(fn_id="batch", trigger=ev("conf/batch"), retries=0,
                        batch_events=inngest.Batch(max_size=10,
                                                   timeout=datetime.timedelta(seconds=3)))
def batch(ctx: inngest.ContextSync) -> Any:
    size = ctx.step.run("size", lambda: sum(len(str(e.data)) for e in ctx.events))
    return {"events": len(ctx.events), "chars": size}


@client.create_function(fn_id="debounced", trigger=ev("conf/debounced"),
                        debounce=inngest.Debounce(period=datetime.timedelta(seconds=1),
                                                  key="event.data.k"))
def debounced(ctx: inngest.ContextSync) -> Any:
    return ctx.event.data.get("n")


@client.create_function(fn_id="rate-limited", trigger=ev("conf/rate-limited"),
                        rate_limit=inngest.RateLimit(limit=1, period=datetime.timedelta(
                            minutes=1), key="event.data.k"))
def rate_limited(ctx: inngest.ContextSync) -> Any:
    return ctx.event.data.get("n")


@client.create_function(fn_id="throttled", trigger=ev("conf/throttled"),
                        throttle=inngest.Throttle(limit=1, period=datetime.timedelta(
                            seconds=2), key="event.data.k"))
def throttled(ctx: inngest.ContextSync) -> Any:
    return ctx.step.run("at", time.time)


@client.create_function(fn_id="singleton-skip", trigger=ev("conf/singleton-skip"),
                        singleton=inngest.Singleton(key="event.data.k", mode="skip"))
def singleton_skip(ctx: inngest.ContextSync) -> Any:
    ctx.step.sleep("hold", datetime.timedelta(seconds=2))
    return ctx.event.data.get("n")


class Wrap(inngest.MiddlewareSync):
    """Wraps the function's result, and counts the executions it saw."""

    def before_execution(self) -> None:
        see("middleware", "before_execution", 1)

    def transform_output(self, result: inngest.TransformOutputResult) -> None:
        if result.step is None and result.has_output():
            result.output = {"wrapped": result.output}


@client.create_function(fn_id="middleware", trigger=ev("conf/middleware"), middleware=[Wrap])
def with_middleware(ctx: inngest.ContextSync) -> Any:
    return ctx.step.run("inner", lambda: "value")


FUNCTIONS = [race, debounced, rate_limited, throttled, singleton_skip, with_middleware,
             child, long_child, overdue_child, invoke_ended, parallel_mixed,
             invoke_fails, invoke_missing, step_error, doomed, retry_history,
             wildcard, sender, keyed, big_steps, batch]


def fastapi_app() -> Any:
    import fastapi
    import inngest.fast_api

    app = fastapi.FastAPI()

    @app.get("/seen")
    def seen() -> dict[str, list[Any]]:
        with _lock:
            return dict(SEEN)

    inngest.fast_api.serve(app, client, FUNCTIONS)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(fastapi_app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

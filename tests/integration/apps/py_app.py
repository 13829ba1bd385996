"""An app written with the official, unmodified ``inngest`` Python SDK, for offload's tests.

Run: ``python tests/integration/apps/py_app.py --framework fastapi|flask --port N``.
The SDK finds offload through its own environment variables: ``INNGEST_DEV=<url>``
(dev mode), or ``INNGEST_BASE_URL`` + ``INNGEST_SIGNING_KEY`` + ``INNGEST_EVENT_KEY``
(production mode). Every step body counts its executions per run, readable at
``GET /counts`` so tests can check that no step ran twice; ``GET /failures`` holds
what ``on_failure`` handlers received.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import threading
from collections import Counter
from typing import Any

import inngest

APP_ID = os.environ.get("APP_ID", "pyapp")
client = inngest.Inngest(app_id=APP_ID, logger=logging.getLogger("py_app"))

_lock = threading.Lock()
COUNTS: Counter[str] = Counter()
FAILURES: list[dict[str, Any]] = []


def count(run_id: str, step: str) -> int:
    """Record one execution of ``step`` in ``run_id``; the number of executions so far."""
    with _lock:
        COUNTS[f"{run_id}/{step}"] += 1
        return COUNTS[f"{run_id}/{step}"]


def ev(name: str) -> inngest.TriggerEvent:
    return inngest.TriggerEvent(event=name)


@client.create_function(fn_id="two-steps", trigger=ev("t/two"))
def two_steps(ctx: inngest.ContextSync) -> Any:
    def a() -> str:
        count(ctx.run_id, "a")
        return "A"

    def b() -> Any:
        count(ctx.run_id, "b")
        return {"got": ctx.event.data.get("value")}

    first = ctx.step.run("a", a)
    second = ctx.step.run("b", b)
    return {"a": first, "b": second}


SHAPES: dict[str, Any] = {
    "null": None, "true": True, "false": False, "int": 42, "neg": -7, "float": 3.5,
    "string": "s", "empty": "", "list": [1, "x", None, [2]], "empty_list": [],
    "object": {"a": {"b": [1, {"c": None}]}, "data": 1}, "empty_object": {},
    "unicode": "héllo ✓ 日本 🚀",
}


@client.create_function(fn_id="shapes", trigger=ev("t/shapes"))
def shapes(ctx: inngest.ContextSync) -> Any:
    out = {}
    for key, value in SHAPES.items():
        out[key] = ctx.step.run(f"shape-{key}", lambda v=value: v)
    return out


@client.create_function(fn_id="dupes", trigger=ev("t/dupes"))
def dupes(ctx: inngest.ContextSync) -> Any:
    return [ctx.step.run("same", lambda i=i: (count(ctx.run_id, f"same{i}"), i)[1])
            for i in range(3)]


@client.create_function(fn_id="sleeper", trigger=ev("t/sleep"))
def sleeper(ctx: inngest.ContextSync) -> Any:
    ctx.step.run("before", lambda: count(ctx.run_id, "before"))
    ctx.step.sleep("nap", datetime.timedelta(seconds=float(ctx.event.data.get("s", 1))))
    ctx.step.run("after", lambda: count(ctx.run_id, "after"))
    return "rested"


@client.create_function(fn_id="waiter", trigger=ev("t/wait"))
def waiter(ctx: inngest.ContextSync) -> Any:
    got = ctx.step.wait_for_event(
        "w", event="t/wait.fulfil", if_exp="event.data.id == async.data.id",
        timeout=datetime.timedelta(seconds=float(ctx.event.data.get("timeout", 30))))
    return {"matched": got.data if got is not None else None}


@client.create_function(fn_id="child", trigger=ev("t/never"))
def child(ctx: inngest.ContextSync) -> Any:
    if ctx.event.data.get("fail"):
        raise inngest.NonRetriableError("child gave up")
    if ctx.event.data.get("slow"):
        ctx.step.sleep("slow", datetime.timedelta(seconds=5))
    return {"n2": int(ctx.event.data.get("n", 0)) * 2}


@client.create_function(fn_id="invoker", trigger=ev("t/invoke"), retries=0)
def invoker(ctx: inngest.ContextSync) -> Any:
    data = dict(ctx.event.data)
    timeout = data.pop("timeout", None)
    try:
        result = ctx.step.invoke(
            "call-child", function=child, data=data,
            timeout=datetime.timedelta(seconds=timeout) if timeout else None)
    except inngest.StepError as err:
        return {"error": err.name, "message": err.message}
    return {"result": result}


@client.create_function(fn_id="parallel", trigger=ev("t/parallel"))
def parallel(ctx: inngest.ContextSync) -> Any:
    def part(name: str) -> Any:
        return ctx.step.run(name, lambda: (count(ctx.run_id, name), name.upper())[1])

    group = ctx.group.parallel((lambda: part("p1"), lambda: part("p2"), lambda: part("p3")))
    tail = ctx.step.run("after", lambda: (count(ctx.run_id, "after"), "tail")[1])
    return {"group": list(group), "tail": tail}


@client.create_function(fn_id="flaky", trigger=ev("t/flaky"))
def flaky(ctx: inngest.ContextSync) -> Any:
    def maybe() -> str:
        if count(ctx.run_id, "maybe") == 1:
            raise ValueError("transient")
        return "ok"

    return ctx.step.run("maybe", maybe)


@client.create_function(fn_id="exhaust", trigger=ev("t/exhaust"), retries=1)
def exhaust(ctx: inngest.ContextSync) -> Any:
    def always() -> str:
        count(ctx.run_id, "always")
        raise ValueError("always broken")

    try:
        ctx.step.run("always", always)
    except inngest.StepError as err:
        return {"caught": err.message}
    return "unreachable"


def record_failure(ctx: inngest.ContextSync) -> None:
    with _lock:
        FAILURES.append(dict(ctx.event.data))


@client.create_function(fn_id="doomed", trigger=ev("t/doomed"), on_failure=record_failure)
def doomed(ctx: inngest.ContextSync) -> Any:
    ctx.step.run("try", lambda: count(ctx.run_id, "try"))
    raise inngest.NonRetriableError("no way")


@client.create_function(fn_id="later", trigger=ev("t/later"))
def later(ctx: inngest.ContextSync) -> Any:
    if count(ctx.run_id, "call") == 1:
        raise inngest.RetryAfterError("not yet", datetime.timedelta(seconds=1))
    return "now"


@client.create_function(fn_id="no-steps", trigger=ev("t/nosteps"))
def no_steps(ctx: inngest.ContextSync) -> Any:
    return {"ok": True, "n": ctx.event.data.get("n")}


@client.create_function(fn_id="multi", trigger=[ev("t/multi.a"), ev("t/multi.b")])
def multi(ctx: inngest.ContextSync) -> Any:
    return ctx.event.name


@client.create_function(fn_id="echo", trigger=inngest.TriggerEvent(
    event="t/echo", expression="event.data.skip != true"))
def echo(ctx: inngest.ContextSync) -> Any:
    e = ctx.event
    return {"id": e.id, "name": e.name, "data": e.data, "ts": e.ts,
            "events": len(ctx.events)}


@client.create_function(fn_id="cronny", trigger=inngest.TriggerCron(cron="* * * * *"))
def cronny(ctx: inngest.ContextSync) -> Any:
    return {"cron": ctx.event.data.get("cron")}


@client.create_function(fn_id="killable", trigger=ev("t/killable"))
def killable(ctx: inngest.ContextSync) -> Any:
    ctx.step.run("one", lambda: count(ctx.run_id, "one"))
    ctx.step.sleep("pause", datetime.timedelta(seconds=2))
    ctx.step.run("two", lambda: count(ctx.run_id, "two"))
    ctx.step.sleep("pause2", datetime.timedelta(seconds=1))
    ctx.step.run("three", lambda: count(ctx.run_id, "three"))
    return "survived"


@client.create_function(fn_id="cancellable", trigger=ev("t/cancellable"), cancel=[
    inngest.Cancel(event="t/cancel", if_exp="event.data.id == async.data.id")])
def cancellable(ctx: inngest.ContextSync) -> Any:
    ctx.step.sleep("long", datetime.timedelta(seconds=30))
    ctx.step.run("never", lambda: count(ctx.run_id, "never"))
    return "not cancelled"


@client.create_function(fn_id="overdue", trigger=ev("t/overdue"),
                        timeouts=inngest.Timeouts(finish=datetime.timedelta(seconds=2)))
def overdue(ctx: inngest.ContextSync) -> Any:
    ctx.step.run("begin", lambda: "started")
    ctx.step.sleep("too-long", datetime.timedelta(seconds=30))
    return ctx.step.run("never", lambda: count(ctx.run_id, "never"))


SPANS: list[tuple[str, float, float]] = []


@client.create_function(fn_id="serial", trigger=ev("t/serial"),
                        concurrency=[inngest.Concurrency(limit=1, key="event.data.user")])
def serial(ctx: inngest.ContextSync) -> Any:
    import time

    def work() -> str:
        begun = time.monotonic()
        time.sleep(0.3)  # a span long enough to overlap: overlap is what the test measures
        with _lock:
            SPANS.append((str(ctx.event.data.get("user")), begun, time.monotonic()))
        return "done"

    return ctx.step.run("work", work)


@client.create_function(fn_id="once-per-order", trigger=ev("t/order"),
                        idempotency="event.data.order")
def once_per_order(ctx: inngest.ContextSync) -> Any:
    return ctx.step.run("charge", lambda: count(ctx.run_id, "charge"))


FUNCTIONS = [serial, once_per_order, overdue, cancellable, two_steps, shapes, dupes, sleeper,
             waiter, child, invoker, parallel, flaky, exhaust, doomed, later, no_steps, multi,
             echo, cronny, killable]


def fastapi_app() -> Any:
    import fastapi
    import inngest.fast_api

    app = fastapi.FastAPI()

    @app.get("/counts")
    def counts() -> dict[str, int]:
        return dict(COUNTS)

    @app.get("/failures")
    def failures() -> list[dict[str, Any]]:
        return FAILURES

    @app.get("/spans")
    def spans() -> list[tuple[str, float, float]]:
        return SPANS

    inngest.fast_api.serve(app, client, FUNCTIONS)
    return app


def flask_app() -> Any:
    import flask
    import inngest.flask

    app = flask.Flask(__name__)

    @app.get("/counts")
    def counts() -> Any:
        return flask.jsonify(dict(COUNTS))

    @app.get("/failures")
    def failures() -> Any:
        return flask.jsonify(FAILURES)

    @app.get("/spans")
    def spans() -> Any:
        return flask.jsonify(SPANS)

    inngest.flask.serve(app, client, FUNCTIONS)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--framework", choices=["fastapi", "flask"], default="fastapi")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.framework == "fastapi":
        import uvicorn

        uvicorn.run(fastapi_app(), host="127.0.0.1", port=args.port, log_level="warning")
    else:
        from werkzeug.serving import run_simple

        run_simple("127.0.0.1", args.port, flask_app(), threaded=True)


if __name__ == "__main__":
    main()

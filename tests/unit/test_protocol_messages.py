"""Register bodies, call requests, memos, lifecycle events and seeded ids
(offload.protocol.messages), checked against the real Python SDK where it matters."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import importlib.util
import json
import pathlib
import sys
import urllib.parse
from types import ModuleType
from typing import Any

import pytest
from inngest._internal import server_lib, step_lib
from ulid import ULID

from offload.errors import ValidationError
from offload.protocol.canonical import canonical_json
from offload.protocol.messages import (
    DEFAULT_RETRIES,
    INVOKE_TIMEOUT_ERROR,
    MAX_RETRIES,
    build_call_request,
    build_call_url,
    event_ids_from_seed,
    function_cancelled_event,
    function_failed_event,
    function_finished_event,
    invoke_event,
    memo_error,
    memo_output,
    parse_register_request,
    scheduled_timer_event,
)
from offload.protocol.opcodes import Opcode, parse_sdk_response

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
TS = dt.datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=dt.UTC)
EVENT = {"id": "01JEVENT0000000000000000AA", "name": "t/x", "data": {"id": 42}, "ts": 1700000000000}


def _sdk_app() -> ModuleType:
    if "sdk_app" in sys.modules:
        return sys.modules["sdk_app"]
    spec = importlib.util.spec_from_file_location("sdk_app", FIXTURES / "sdk_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["sdk_app"] = module
    spec.loader.exec_module(module)
    return module


def h(step_id: str) -> str:
    return hashlib.sha1(step_id.encode()).hexdigest()  # noqa: S324


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


# --- register ------------------------------------------------------------------


def test_parse_python_register_body() -> None:
    body = fixture("register_py.json")["body"]
    reg = parse_register_request(body)
    assert reg.app_id == "offload-fixture"
    assert reg.url == "http://localhost/api/inngest"
    assert reg.sdk == "py:v0.5.19" and reg.framework == "flask"
    assert reg.deploy_type == "ping" and reg.capabilities["trust_probe"] == "v1"
    assert len(reg.checksum) == 64
    fns = {f.id: f for f in reg.functions}
    two = fns["offload-fixture-two-steps"]
    assert two.name == "two-steps" and two.config.retries == DEFAULT_RETRIES
    assert two.config.url.endswith("fnId=offload-fixture-two-steps&stepId=step")
    assert two.config.triggers[0].event == "t/two" and two.config.triggers[0].expression is None
    assert fns["offload-fixture-flaky"].config.retries == 2
    failure = fns["offload-fixture-doomed-failure"]
    assert failure.config.retries == 0
    assert failure.config.triggers[0].event == "inngest/function.failed"
    assert failure.config.triggers[0].expression == (
        "event.data.function_id == 'offload-fixture-doomed'")
    ctl = fns["offload-fixture-controlled"]
    assert ctl.config.retries == MAX_RETRIES  # 30 requested, capped
    assert ctl.config.triggers[1].cron == "TZ=Europe/Paris */5 * * * *"
    assert ctl.config.triggers[1].jitter == "30s"
    assert ctl.raw["throttle"] == {"burst": 1, "limit": 5, "period": "1m"}
    assert ctl.raw["singleton"]["mode"] == "skip"
    assert fns["offload-fixture-limited"].raw["batchEvents"]["maxSize"] == 100


def test_parse_js_register_body() -> None:
    body = fixture("register_js_shape.json")
    reg = parse_register_request(body)
    assert reg.app_id == "next-app" and reg.app_version == "abc123"
    assert reg.sdk == "js:v4.24.0" and reg.framework == "nextjs"
    assert reg.functions[0].config.retries == 0 and reg.functions[0].raw["concurrency"] == 3
    assert reg.functions[1].config.triggers[0].cron == "0 3 * * *"
    assert reg.functions[1].config.retries == DEFAULT_RETRIES


def test_checksum_is_stable_and_content_sensitive() -> None:
    body = fixture("register_js_shape.json")
    shuffled = dict(reversed(list(body.items())))
    assert parse_register_request(body).checksum == parse_register_request(shuffled).checksum
    changed = copy.deepcopy(body)
    changed["functions"][0]["name"] = "Other"
    assert parse_register_request(changed).checksum != parse_register_request(body).checksum
    assert parse_register_request(body).checksum == hashlib.sha256(canonical_json(body)).hexdigest()


def _mutate(path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(fixture("register_js_shape.json"))
    target: Any = body
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    if value is _DELETE:
        del target[int(last) if last.isdigit() else last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return body


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("appName", _DELETE, "appName"),
        ("appName", "  ", "appName"),
        ("url", "not a url", "url"),
        ("url", "ftp://x/y", "url"),
        ("functions", {"a": 1}, "functions"),
        ("functions.0", "x", "functions[0]"),
        ("functions.0.id", _DELETE, "functions[0].id"),
        ("functions.0.triggers", [], "functions[0].triggers"),
        ("functions.0.triggers", _DELETE, "functions[0].triggers"),
        ("functions.0.triggers.0", {}, "functions[0].triggers[0]"),
        ("functions.0.triggers.0", {"event": "a", "cron": "* * * * *"}, "functions[0].triggers[0]"),
        ("functions.0.triggers.0", {"event": ""}, "functions[0].triggers[0].event"),
        (
            "functions.1.triggers.0",
            {"cron": "0 3 * * *", "jitter": "soon"},
            "functions[1].triggers[0].jitter",
        ),
        ("functions.0.steps", _DELETE, "functions[0].steps"),
        ("functions.0.steps.step.runtime", _DELETE, "functions[0].steps.step.runtime"),
        ("functions.0.steps.step.runtime.url", "/relative", "functions[0].steps.step.runtime.url"),
        ("functions.0.steps.step.retries.attempts", -1, "functions[0].steps.step.retries.attempts"),
        (
            "functions.0.steps.step.retries.attempts",
            "3",
            "functions[0].steps.step.retries.attempts",
        ),
        ("functions.0.rateLimit.period", "forever", "functions[0].rateLimit.period"),
        ("functions.1.id", "next-app-hello", "functions[1].id"),
        ("capabilities", "all", "capabilities"),
        ("sdk", 5, "sdk"),
    ],
)
def test_register_validation_names_the_field(path: str, value: Any, field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_register_request(_mutate(path, value))
    assert exc.value.field == field


def test_register_rejects_non_object() -> None:
    with pytest.raises(ValidationError):
        parse_register_request([])  # type: ignore[arg-type]


def test_register_allows_no_functions() -> None:
    reg = parse_register_request({"appname": "a", "url": "http://a.test/api/inngest"})
    assert reg.functions == [] and reg.deploy_type == "ping"


# --- call request --------------------------------------------------------------


def _call(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "run_id": "01JRUN00000000000000000000",
        "attempt": 0,
        "max_attempts": 5,
        "events": [EVENT],
        "steps": {},
        "stack": [],
        "disable_immediate_execution": False,
    }
    args.update(overrides)
    return build_call_request(**args)


def test_call_request_shape() -> None:
    body = _call(stack=["a", "b"], steps={"a": memo_output(1), "b": memo_output(2)})
    assert body["event"] == EVENT and body["events"] == [EVENT]
    assert body["use_api"] is False and body["version"] == 2
    ctx = body["ctx"]
    assert ctx["stack"] == {"stack": ["a", "b"], "current": 2}
    assert ctx["attempt"] == 0 and ctx["max_attempts"] == 5
    assert ctx["disable_immediate_execution"] is False and ctx["use_api"] is False
    assert "fn_id" not in ctx  # keeps JS v4 off the checkpointing path


def test_call_request_passes_python_sdk_strict_model() -> None:
    body = _call(
        events=[EVENT, {"name": "t/y", "data": None, "ts": 1.7e12}],
        steps={"x": memo_output(None)},
        stack=["x"],
        disable_immediate_execution=True,
    )
    parsed = server_lib.ServerRequest.from_raw(canonical_json(body))
    assert not isinstance(parsed, Exception), parsed
    assert parsed.ctx.stack.stack == ["x"] and parsed.ctx.max_attempts == 5
    assert parsed.events is not None and parsed.events[1].ts == 1700000000000
    assert parsed.events[1].data == {}


def test_call_request_validation() -> None:
    with pytest.raises(ValidationError):
        _call(events=[])
    with pytest.raises(ValidationError):
        _call(attempt=-1)
    with pytest.raises(ValidationError):
        _call(max_attempts=0)
    with pytest.raises(ValidationError):
        _call(request_version=0)
    with pytest.raises(ValidationError) as exc:
        _call(events=[{"data": {}}])
    assert exc.value.field == "events[0].name"
    with pytest.raises(ValidationError):
        _call(events=[{"name": "a", "data": [1]}])
    with pytest.raises(ValidationError):
        _call(events=[{"name": "a", "ts": "yesterday"}])


def test_call_request_normalises_events_without_touching_input() -> None:
    event = {"name": "a", "id": None, "ts": None, "user": None, "data": {"k": 1}}
    body = _call(events=[event])
    assert body["event"] == {"name": "a", "data": {"k": 1}}
    assert event["id"] is None


def test_build_call_url() -> None:
    url = "http://app.test/api/inngest?fnId=app-fn&stepId=step"
    assert build_call_url(url, "abc") == "http://app.test/api/inngest?fnId=app-fn&stepId=abc"
    got = build_call_url("https://app.test/x?fnId=a%20b&other=1", "step")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(got).query)
    assert query == {"fnId": ["a b"], "other": ["1"], "stepId": ["step"]}


# --- memos, read back by the real SDK --------------------------------------------


def test_memo_shapes() -> None:
    assert memo_output(None) == {"data": None}
    assert memo_output({"data": 1}) == {"data": {"data": 1}}
    assert memo_error({"name": "E", "message": "m", "stack": None, "code": "x"}) == {
        "error": {"name": "E", "message": "m", "code": "x"}
    }
    assert memo_error({"error": "boom"}) == {"error": {"name": "Error", "message": "boom"}}
    assert memo_error(INVOKE_TIMEOUT_ERROR)["error"]["name"] == "InngestInvokeTimeoutError"


def test_python_sdk_reads_memos_as_intended() -> None:
    raw = {
        "out": memo_output({"data": "looks wrapped"}),
        "null": memo_output(None),
        "err": memo_error({"name": "ValueError", "message": "m", "stack": "tb"}),
        "event": {"name": "t/wait.fulfil", "data": {"id": 1}, "id": "e", "ts": 1},
        "sleep": None,
    }
    memos = step_lib.StepMemos.from_raw(json.loads(canonical_json(raw)))
    got = {k: memos.pop(k) for k in raw}
    assert got["out"].data == {"data": "looks wrapped"} and got["out"].error is None
    assert got["null"].data is None and got["null"].error is None
    assert got["err"].error is not None and got["err"].error.name == "ValueError"
    assert got["event"].data == raw["event"]
    assert got["sleep"].data is None


class _Run:
    """A tiny in-test executor: enough of the loop to prove the messages fit the SDK."""

    def __init__(self, fn: str, *, max_attempts: int = 5) -> None:
        self.sdk = _sdk_app()
        self.app, _ = self.sdk.build_app()
        self.fn = fn
        self.max_attempts = max_attempts
        self.steps: dict[str, Any] = {}
        self.stack: list[str] = []
        self.calls = 0

    def call(self, step_id: str = "step", *, attempt: int = 0, die: bool = False) -> Any:
        self.calls += 1
        body = build_call_request(
            run_id="01JRUN00000000000000000000",
            attempt=attempt,
            max_attempts=self.max_attempts,
            events=[EVENT],
            steps=self.steps,
            stack=self.stack,
            disable_immediate_execution=die,
            step_id=step_id,
        )
        step_url = f"http://app.test/api/inngest?fnId={self.sdk.APP_ID}-{self.fn}&stepId=step"
        query = urllib.parse.urlsplit(build_call_url(step_url, step_id)).query
        ans = self.sdk.post(self.app, query, canonical_json(body), {})
        return parse_sdk_response(ans.status, ans.headers, ans.body)

    def record(self, step_id: str, memo: Any) -> None:
        self.steps[step_id] = memo
        self.stack.append(step_id)


def test_sequential_run_to_completion() -> None:
    run = _Run("two-steps")
    while True:
        res = run.call()
        if res.kind == "done":
            break
        [op] = res.ops
        assert op.op is Opcode.StepRun
        run.record(op.id, memo_output(op.data))
    assert res.output == {"a": "A", "b": {"n": 1, "a": "A"}, "event": {"id": 42}}
    assert run.calls == 3


def test_parallel_run_to_completion() -> None:
    run = _Run("parallel")
    planned = run.call().ops
    assert [op.op for op in planned] == [Opcode.StepPlanned] * 3
    for op in reversed(planned):  # complete out of order
        [ran] = run.call(op.id, die=True).ops
        assert ran.op is Opcode.StepRun and ran.id == op.id
        run.record(ran.id, memo_output(ran.data))
    res = run.call(die=True)
    [tail] = res.ops
    assert tail.op is Opcode.StepPlanned and tail.display_name == "tail"
    [ran] = run.call(tail.id, die=True).ops
    run.record(ran.id, memo_output(ran.data))
    done = run.call()
    assert done.kind == "done" and done.output == 6


def test_step_error_then_failed_memo_is_raised_in_user_code() -> None:
    run = _Run("flaky", max_attempts=2)
    [first] = run.call(attempt=0).ops
    assert first.op is Opcode.StepError
    [last] = run.call(attempt=1).ops
    assert last.op is Opcode.StepFailed and last.error is not None
    run.record(last.id, memo_error(last.error))
    done = run.call()
    assert done.kind == "done"
    assert done.output == {"caught": "ValueError", "message": "transient"}


def test_sleep_wait_and_invoke_memos() -> None:
    sleeper = _Run("sleeper")
    [op] = sleeper.call().ops
    sleeper.record(op.id, None)
    assert sleeper.call().output == "rested"

    waiter = _Run("waiter")
    [op] = waiter.call().ops
    waiter.record(
        op.id,
        {"name": "t/wait.fulfil", "data": {"id": 42, "v": "x"}, "id": "e2", "ts": 1700000000001},
    )
    assert waiter.call().output == {"id": 42, "v": "x"}

    timed_out = _Run("waiter")
    [op] = timed_out.call().ops
    timed_out.record(op.id, None)
    assert timed_out.call().output is None

    invoker = _Run("invoker")
    [op] = invoker.call().ops
    invoker.record(op.id, memo_output({"doubled": 14}))
    assert invoker.call().output == {"doubled": 14}

    failed = _Run("invoker")
    [op] = failed.call().ops
    failed.record(op.id, memo_error(INVOKE_TIMEOUT_ERROR))
    res = failed.call()
    assert res.kind == "error" and res.output["name"] == "InngestInvokeTimeoutError"


def test_invoked_child_reads_invoke_event() -> None:
    sdk = _sdk_app()
    app, _ = sdk.build_app()
    event = invoke_event(
        function_id=f"{sdk.APP_ID}-child",
        data={"n": 7},
        parent_run_id="01JPARENT",
        step_id=h("call-child"),
        ts=TS,
        display_name="call-child",
    )
    body = _call(events=[event])
    ans = sdk.post(app, f"fnId={sdk.APP_ID}-child&stepId=step", canonical_json(body), {})
    res = parse_sdk_response(ans.status, ans.headers, ans.body)
    assert res.kind == "done" and res.output == {"doubled": 14}


def test_on_failure_handler_accepts_failed_event() -> None:
    sdk = _sdk_app()
    app, _ = sdk.build_app()
    event = function_failed_event(
        function_id=f"{sdk.APP_ID}-doomed",
        run_id="01JRUN",
        events=[EVENT],
        error={"name": "E", "message": "m"},
        ts=TS,
    )
    body = _call(events=[event])
    ans = sdk.post(app, f"fnId={sdk.APP_ID}-doomed-failure&stepId=step", canonical_json(body), {})
    assert parse_sdk_response(ans.status, ans.headers, ans.body).kind == "done"


# --- lifecycle events ----------------------------------------------------------------


def test_invoke_event_shape() -> None:
    ev = invoke_event(
        function_id="app-child",
        data={"n": 7},
        parent_run_id="01JP",
        step_id="abc",
        ts=TS,
        event_id="01JE",
        user={"u": 1},
    )
    assert ev["name"] == "inngest/function.invoked" and ev["id"] == "01JE"
    assert ev["ts"] == 1772600767890 and ev["user"] == {"u": 1}
    assert ev["data"]["n"] == 7
    meta = ev["data"]["_inngest"]
    assert meta["fn_id"] == "app-child" and meta["correlation_id"] == "01JP.abc"
    assert meta["expire"] == 0


def test_finished_failed_cancelled_events() -> None:
    ok = function_finished_event(
        function_id="app-fn",
        run_id="01JR",
        events=[EVENT],
        ts=TS,
        result={"x": 1},
        correlation_id="01JP.abc",
    )
    assert ok["name"] == "inngest/function.finished" and "id" not in ok
    assert ok["data"]["result"] == {"x": 1} and "error" not in ok["data"]
    assert ok["data"]["event"] == EVENT and ok["data"]["events"] == [EVENT]
    assert ok["data"]["correlation_id"] == "01JP.abc"
    null = function_finished_event(function_id="f", run_id="r", events=[EVENT], ts=TS)
    assert null["data"]["result"] is None
    bad = function_finished_event(
        function_id="f", run_id="r", events=[EVENT], ts=TS, error={"error": "boom"}
    )
    assert bad["data"]["error"] == {"name": "Error", "message": "boom", "stack": None}
    assert "result" not in bad["data"]
    failed = function_failed_event(
        function_id="f",
        run_id="r",
        events=[EVENT],
        ts=TS,
        error={"name": "E", "message": "m", "stack": "s"},
    )
    assert failed["name"] == "inngest/function.failed"
    assert failed["data"]["error"] == {"name": "E", "message": "m", "stack": "s"}
    assert failed["data"]["function_id"] == "f" and failed["data"]["run_id"] == "r"
    cancelled = function_cancelled_event(function_id="f", run_id="r", events=[EVENT], ts=TS)
    assert cancelled["name"] == "inngest/function.cancelled"
    assert cancelled["data"]["error"]["name"] == "FunctionCancelledError"


def test_scheduled_timer_event() -> None:
    ev = scheduled_timer_event("*/5 * * * *", dt.datetime(2026, 1, 1, 0, 5, tzinfo=dt.UTC))
    assert ev == {
        "name": "inngest/scheduled.timer",
        "id": "2026-01-01T00:05:00.000Z",
        "data": {
            "cron": "*/5 * * * *",
            "fireAt": "2026-01-01T00:05:00.000Z",
            "scheduledAt": "2026-01-01T00:05:00.000Z",
        },
        "ts": 1767225900000,
    }
    tz = dt.timezone(dt.timedelta(hours=1))
    ev2 = scheduled_timer_event(
        "x",
        dt.datetime(2026, 1, 1, 1, 5, 30, tzinfo=tz),
        scheduled_at=dt.datetime(2026, 1, 1, 1, 5, tzinfo=tz),
    )
    assert ev2["id"] == "2026-01-01T00:05:30.000Z"
    assert ev2["data"]["scheduledAt"] == "2026-01-01T00:05:00.000Z"


def test_events_need_aware_times() -> None:
    with pytest.raises(ValueError):
        scheduled_timer_event("x", dt.datetime(2026, 1, 1))  # noqa: DTZ001


# --- seeded event ids ----------------------------------------------------------------


def test_event_ids_from_seed_are_deterministic_ulids() -> None:
    seed = "1700000000000,AAECAwQFBgcICQ=="
    ids = event_ids_from_seed(seed, 3)
    assert ids is not None and len(ids) == 3 and len(set(ids)) == 3
    assert ids == event_ids_from_seed(seed, 3)
    assert event_ids_from_seed(seed, 1) == ids[:1]
    parsed = [ULID.from_str(i) for i in ids]
    assert all(p.milliseconds == 1700000000000 for p in parsed)
    assert [int(p) & ((1 << 80) - 1) for p in parsed] == [
        0x00010203040506070809 + i for i in range(3)
    ]
    assert ids == sorted(ids)


def test_event_ids_from_seed_entropy_wraps() -> None:
    ids = event_ids_from_seed("1,/////////////w==", 2)
    assert ids is not None
    assert int(ULID.from_str(ids[1])) & ((1 << 80) - 1) == 0


def test_event_ids_from_sdk_seed() -> None:
    from inngest._internal.client_lib.client import _seed

    seed = _seed()
    assert event_ids_from_seed(seed, 2) == event_ids_from_seed(seed, 2)


@pytest.mark.parametrize(
    "seed",
    [
        None,
        "",
        "abc",
        "1700000000000",
        "x,AAECAwQFBgcICQ==",
        "1700000000000,not base64!",
        "1700000000000,AAEC",
        "-1,AAECAwQFBgcICQ==",
        f"{1 << 48},AAECAwQFBgcICQ==",
    ],
)
def test_event_ids_from_bad_seed(seed: str | None) -> None:
    assert event_ids_from_seed(seed, 1) is None


def test_event_ids_zero_count() -> None:
    assert event_ids_from_seed("1,AAECAwQFBgcICQ==", 0) == []

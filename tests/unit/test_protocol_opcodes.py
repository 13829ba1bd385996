"""Parsing SDK answers (offload.protocol.opcodes), mostly on captured SDK bodies."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
from typing import Any

import pytest

from offload.errors import ProtocolError
from offload.protocol.opcodes import (
    GeneratorOp,
    Opcode,
    invoke_spec,
    normalize_error,
    parse_retry_after,
    parse_sdk_response,
    sleep_until,
    wait_for_event_spec,
)

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
SDK = {"X-Inngest-SDK": "inngest-js:v4.24.0", "X-Inngest-Req-Version": "2"}
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def captured(name: str) -> tuple[int, dict[str, str], bytes]:
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    res = data["response"]
    return res["status"], res["headers"], res["body"].encode()


def parse(name: str) -> Any:
    return parse_sdk_response(*captured(name))


def test_opcode_values_are_wire_spelling() -> None:
    assert Opcode.StepRun == "StepRun"
    assert Opcode("AIGateway") is Opcode.AIGateway
    assert Opcode("None") is Opcode.NONE
    for name in [
        "Step",
        "StepPlanned",
        "Sleep",
        "WaitForEvent",
        "InvokeFunction",
        "StepError",
        "StepFailed",
        "StepNotFound",
        "RunComplete",
        "DiscoveryRequest",
        "Gateway",
        "WaitForSignal",
        "SyncRunComplete",
        "DeferAdd",
        "DeferAbort",
    ]:
        assert Opcode(name).value == name


# --- captured Python SDK answers -----------------------------------------------


def test_step_run() -> None:
    res = parse("sdk_py_step_run")
    assert res.kind == "ops" and res.status == 206
    assert res.sdk == "inngest-py:v0.5.19" and res.request_version == 2
    [op] = res.ops
    assert op.op is Opcode.StepRun
    assert op.id == "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8"  # sha1("a")
    assert op.data == "A" and op.has_data
    assert op.display_name == op.userland_id == op.step_name == "a"
    assert op.error is None and not res.no_retry


def test_done() -> None:
    res = parse("sdk_py_done")
    assert res.kind == "done"
    assert res.output == {"a": "A", "b": {"a": "A", "n": 1}, "event": {"id": 42}}


def test_sleep() -> None:
    [op] = parse("sdk_py_sleep").ops
    assert op.op is Opcode.Sleep
    deadline = sleep_until(op, NOW)
    assert deadline.tzinfo is not None
    assert deadline == dt.datetime.fromisoformat(op.name.replace("Z", "+00:00"))  # type: ignore[union-attr]


def test_wait_for_event() -> None:
    [op] = parse("sdk_py_wait_for_event").ops
    assert op.op is Opcode.WaitForEvent
    spec = wait_for_event_spec(op)
    assert spec.event == "t/wait.fulfil"
    assert spec.timeout == dt.timedelta(seconds=30)
    assert spec.expression == "event.data.id == async.data.id"


def test_invoke() -> None:
    [op] = parse("sdk_py_invoke").ops
    assert op.op is Opcode.InvokeFunction
    spec = invoke_spec(op)
    assert spec.function_id == "offload-fixture-child"
    assert spec.data == {"n": 7}
    assert spec.timeout is None and spec.user is None


def test_step_error_and_failed() -> None:
    res = parse("sdk_py_step_error")
    [op] = res.ops
    assert op.op is Opcode.StepError and not res.no_retry
    assert op.error is not None
    assert op.error["name"] == "ValueError" and op.error["message"] == "transient"
    assert "Traceback" in op.error["stack"]
    assert set(op.error) == {"name", "message", "stack", "code"}
    [failed] = parse("sdk_py_step_failed").ops
    assert failed.op is Opcode.StepFailed and failed.error is not None


def test_parallel_planned() -> None:
    res = parse("sdk_py_parallel_planned")
    assert [op.op for op in res.ops] == [Opcode.StepPlanned] * 3
    assert [op.display_name for op in res.ops] == ["p1", "p2", "p3"]
    assert all(op.parallel_mode == "wait" for op in res.ops)
    [after] = parse("sdk_py_planned_after_parallel").ops
    assert after.op is Opcode.StepPlanned and after.display_name == "tail"


def test_non_retriable_function_error() -> None:
    res = parse("sdk_py_non_retriable")
    assert res.kind == "error" and res.status == 500 and res.no_retry
    assert res.output["name"] == "NonRetriableError" and res.output["message"] == "nope"


def test_retry_after_function_error() -> None:
    res = parse("sdk_py_retry_after")
    assert res.kind == "error" and not res.no_retry
    assert res.retry_after == dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_retriable_function_error() -> None:
    res = parse("sdk_py_function_error")
    assert res.kind == "error" and not res.no_retry
    assert res.output["name"] == "RuntimeError" and res.output["message"] == "kaboom"


# --- JS SDK shapes and edge cases -------------------------------------------------


def test_js_non_retriable_is_400_with_header() -> None:
    body = {
        "name": "NonRetriableError",
        "message": "bad input",
        "stack": "Error: bad\n at x",
        "__serialized": True,
    }
    res = parse_sdk_response(400, {**SDK, "X-Inngest-No-Retry": "true"}, json.dumps(body).encode())
    assert res.kind == "error" and res.no_retry
    assert res.output == body  # kept whole, the JS marker included


def test_js_step_not_found_error_body() -> None:
    body = {"error": "Could not find step", "requestedStep": "abc", "foundSteps": []}
    res = parse_sdk_response(500, {**SDK, "X-Inngest-No-Retry": "false"}, json.dumps(body).encode())
    assert res.output["message"] == "Could not find step" and not res.no_retry


def test_js_sleep_duration_in_name_and_timing() -> None:
    body = [
        {
            "op": "Sleep",
            "id": "h1",
            "name": "2s",
            "displayName": "nap",
            "timing": {"start": 1, "end": 2},
        }
    ]
    [op] = parse_sdk_response(206, SDK, json.dumps(body).encode()).ops
    assert sleep_until(op, NOW) == NOW + dt.timedelta(seconds=2)
    assert op.timing == {"start": 1, "end": 2}
    assert not op.has_data


def test_sleep_falls_back_to_opts_duration() -> None:
    op = GeneratorOp(op=Opcode.Sleep, id="x", opts={"duration": "1m"})
    assert sleep_until(op, NOW) == NOW + dt.timedelta(minutes=1)
    with pytest.raises(ProtocolError):
        sleep_until(GeneratorOp(op=Opcode.Sleep, id="x", name="soon"), NOW)


def test_race_mode() -> None:
    body = [{"op": "StepPlanned", "id": "a", "opts": {"parallelMode": "race"}}]
    [op] = parse_sdk_response(206, SDK, json.dumps(body).encode()).ops
    assert op.parallel_mode == "race"


def test_run_complete_206_is_done() -> None:
    body = [{"op": "RunComplete", "id": "c", "data": {"ok": 1}}]
    res = parse_sdk_response(206, SDK, json.dumps(body).encode())
    assert res.kind == "done" and res.output == {"ok": 1}


def test_run_complete_200_list_is_done() -> None:
    body = [{"op": "RunComplete", "data": "result"}]
    res = parse_sdk_response(200, SDK, json.dumps(body).encode())
    assert res.kind == "done" and res.output == "result"


def test_plain_list_result_is_not_mistaken_for_ops() -> None:
    res = parse_sdk_response(200, SDK, b'[{"op": "mine"}, 2]')
    assert res.kind == "done" and res.output == [{"op": "mine"}, 2]


def test_legacy_bare_object_206() -> None:
    res = parse_sdk_response(206, SDK, b'{"op": "Step", "id": "x", "data": 1}')
    assert res.ops[0].op is Opcode.Step


def test_empty_200_is_null_result() -> None:
    res = parse_sdk_response(200, SDK, b"")
    assert res.kind == "done" and res.output is None


def test_headers_are_case_insensitive() -> None:
    res = parse_sdk_response(200, {"x-inngest-sdk": "py", "X-INNGEST-REQ-VERSION": "1"}, b"1")
    assert res.sdk == "py" and res.request_version == 1


@pytest.mark.parametrize("status", [200, 206])
def test_2xx_without_sdk_header_is_protocol_error(status: int) -> None:
    with pytest.raises(ProtocolError, match="X-Inngest-SDK"):
        parse_sdk_response(status, {"Content-Type": "text/html"}, b"<html>ok</html>")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'[{"op": "Teleport", "id": "x"}]',
        b'[{"id": "x"}]',
        b"[]",
        b'[{"op": "StepRun"}]',
        b'"str"',
    ],
)
def test_bad_206_is_protocol_error(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_sdk_response(206, SDK, body)


def test_unexpected_2xx_is_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        parse_sdk_response(204, SDK, b"")


def test_non_json_error_body() -> None:
    res = parse_sdk_response(502, {}, b"<html>Bad Gateway</html>")
    assert res.kind == "error" and res.sdk is None
    assert res.output["message"].startswith("HTTP 502: <html>")


def test_empty_error_body() -> None:
    res = parse_sdk_response(500, SDK, b"")
    assert res.output["message"] == "HTTP 500 with an empty body"


def test_unauthorized_answer() -> None:
    res = parse_sdk_response(401, {}, b'{"message":"Unauthorized"}')
    assert res.kind == "error" and res.output["message"] == "Unauthorized"


# --- 201 streaming envelope ------------------------------------------------------


def test_streaming_envelope_unwraps() -> None:
    inner = json.dumps([{"op": "StepRun", "id": "a", "data": 5}])
    envelope = json.dumps(
        {"status": 206, "headers": {"x-inngest-no-retry": "false"}, "body": inner}
    )
    res = parse_sdk_response(201, SDK, b"    " + envelope.encode())
    assert res.kind == "ops" and res.status == 206 and res.ops[0].data == 5
    assert res.sdk == SDK["X-Inngest-SDK"]


def test_streaming_envelope_with_error() -> None:
    envelope = {
        "status": 500,
        "headers": {"X-Inngest-No-Retry": "true"},
        "body": json.dumps({"name": "E", "message": "m"}),
    }
    res = parse_sdk_response(201, SDK, b"  " + json.dumps(envelope).encode())
    assert res.kind == "error" and res.no_retry and res.output["name"] == "E"


@pytest.mark.parametrize(
    "body", [b"   ", b" {", b'{"status": 201, "body": ""}', b'{"body": "1"}', b"[]"]
)
def test_bad_streaming_envelope(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_sdk_response(201, SDK, body)


# --- helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("120", dt.timedelta(seconds=120)),
        ("2030-01-02T03:04:05.000Z", dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)),
        ("2030-01-02T04:04:05+01:00", dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)),
        ("Wed, 21 Oct 2015 07:28:00 GMT", dt.datetime(2015, 10, 21, 7, 28, tzinfo=dt.UTC)),
        ("soon", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: object) -> None:
    assert parse_retry_after(value) == expected


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (
            {"name": "TypeError", "message": "m", "stack": "s", "code": "unknown"},
            {"name": "TypeError", "message": "m", "stack": "s", "code": "unknown"},
        ),
        (
            {"name": "E", "message": "m", "code": "x", "data": {"k": 1},
             "cause": {"name": "C", "message": "root", "cause": "text"}},
            {"name": "E", "message": "m", "stack": None, "code": "x", "data": {"k": 1},
             "cause": {"name": "C", "message": "root", "stack": None, "cause": "text"}},
        ),
        (
            {"error": "invalid status code: 500"},
            {"name": "Error", "message": "invalid status code: 500", "stack": None},
        ),
        (
            {"error": {"name": "X", "message": "inner"}},
            {"name": "X", "message": "inner", "stack": None},
        ),
        ("plain", {"name": "Error", "message": "plain", "stack": None}),
        (None, {"name": "Error", "message": "unknown error", "stack": None}),
        ({}, {"name": "Error", "message": "unknown error", "stack": None}),
        (42, {"name": "Error", "message": "42", "stack": None}),
        (
            {"name": 5, "message": {"a": 1}, "stack": 3},
            {"name": "Error", "message": '{"a": 1}', "stack": None},
        ),
    ],
)
def test_normalize_error(obj: object, expected: dict[str, object]) -> None:
    assert normalize_error(obj) == expected


def test_wait_for_event_spec_fallbacks_and_errors() -> None:
    op = GeneratorOp(op=Opcode.WaitForEvent, id="x", opts={"event": "a/b", "timeout": "1h"})
    assert wait_for_event_spec(op).event == "a/b"
    assert wait_for_event_spec(op).expression is None
    with pytest.raises(ProtocolError):
        wait_for_event_spec(GeneratorOp(op=Opcode.WaitForEvent, id="x", name="a/b"))
    with pytest.raises(ProtocolError):
        wait_for_event_spec(
            GeneratorOp(op=Opcode.WaitForEvent, id="x", name="a/b", opts={"timeout": "x"})
        )


def test_invoke_spec_errors_and_timeout() -> None:
    op = GeneratorOp(
        op=Opcode.InvokeFunction,
        id="x",
        opts={"function_id": "app-fn", "payload": {"data": {"a": 1}, "user": {}}, "timeout": "1m"},
    )
    spec = invoke_spec(op)
    assert spec.timeout == dt.timedelta(minutes=1) and spec.user == {}
    with pytest.raises(ProtocolError):
        invoke_spec(GeneratorOp(op=Opcode.InvokeFunction, id="x", opts={}))

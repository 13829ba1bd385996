"""Unit checks of the SDK-fidelity rules: wildcard triggers, errors kept whole, attempt
history entries, the concurrency key shown as a run's queue, step kinds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from offload.engine import flow
from offload.engine.executor import Call, _run_kind, with_attempt
from offload.models import Step, StepKind, StepStatus
from offload.protocol.function_config import event_name_matches, parse_flow
from offload.protocol.messages import memo_error
from offload.protocol.opcodes import GeneratorOp, Opcode, SdkResponse, normalize_error
from offload.protocol.runs import RUNNABLE, attempt_entry, pending_steps

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("app/*", "app/user.created", True),
    ("app/*", "app/", True),
    ("app/*", "other/x", False),
    ("app/*", "appx/y", False),
    ("*", "anything", True),
    ("app/exact", "app/exact", True),
    ("app/exact", "app/exact.more", False),
    (None, "x", False),
])
def test_event_name_matches(pattern: Any, name: str, expected: bool) -> None:
    assert event_name_matches(pattern, name) is expected


def test_errors_kept_whole_with_nested_causes() -> None:
    sent = {"name": "Error", "message": "outer", "stack": "s", "code": "E1",
            "__serialized": True,
            "cause": {"name": "Error", "message": "middle",
                      "cause": {"name": "TypeError", "message": "inner", "stack": "t"}}}
    kept = normalize_error(sent)
    assert kept["code"] == "E1" and kept["__serialized"] is True
    assert kept["cause"]["cause"]["message"] == "inner"
    assert kept["cause"]["stack"] is None  # the three documented fields always present
    memo = memo_error(sent)["error"]
    assert "stack" not in memo["cause"]  # the JS schema refuses a null stack
    assert memo["cause"]["cause"]["stack"] == "t" and memo["code"] == "E1"


def _step(history: list[dict[str, Any]], kind: StepKind = StepKind.RUN) -> Step:
    return Step(run_id="r", id="s", name="s", kind=kind, status=StepStatus.ERRORED,
                attempts=len(history), position=0, history=history)


def test_history_appends_each_attempt_once() -> None:
    call = Call(target="s", attempt=1, max_attempts=3, started_at=T0,
                response=SdkResponse(kind="error"))
    first = [attempt_entry(1, StepStatus.ERRORED, T0 - timedelta(seconds=5),
                           T0 - timedelta(seconds=4), {"name": "E", "message": "m"})]
    ended = T0 + timedelta(milliseconds=250)
    history = with_attempt(_step(first), call, StepStatus.COMPLETED, ended, None)
    assert [h["attempt"] for h in history] == [1, 2]
    assert history[1]["status"] == "completed" and history[1]["duration_ms"] == 250.0
    # a duplicate delivery of the same attempt replaces it instead of adding one
    again = with_attempt(_step(history), call, StepStatus.COMPLETED, ended, None)
    assert [h["attempt"] for h in again] == [1, 2]


def test_send_event_steps_are_run_like() -> None:
    op = GeneratorOp(op=Opcode.StepPlanned, id="h", opts={"type": "step.sendEvent"})
    assert _run_kind(None, op) is StepKind.SEND_EVENT
    assert _run_kind(None, GeneratorOp(op=Opcode.StepRun, id="h")) is StepKind.RUN
    assert _run_kind(_step([], StepKind.SEND_EVENT), GeneratorOp(op=Opcode.StepRun, id="h")) \
        is StepKind.SEND_EVENT
    assert StepKind.SEND_EVENT in RUNNABLE
    assert pending_steps([_step([], StepKind.SEND_EVENT)])


def test_concurrency_key_value_is_the_runs_queue() -> None:
    config = {"concurrency": [{"limit": 2, "key": "event.data.user"}]}
    settings = flow.for_function(parse_flow(config), [{"name": "e", "data": {"user": "ann"}}],
                                 "app-fn")
    assert flow.concurrency_key_value(settings, "app-fn") == "ann"
    unkeyed = flow.for_function(parse_flow({"concurrency": [{"limit": 2}]}), [{"name": "e"}],
                                "app-fn")
    assert flow.concurrency_key_value(unkeyed, "app-fn") is None

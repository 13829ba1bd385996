"""TaskSpec: the one place an HTTP task becomes a run (create, replay, rerun)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from offload.api.v1.tasks import TaskIn
from offload.engine.replay import replay_of
from offload.engine.task_spec import TaskSpec
from offload.models import HTTP_FUNCTION_ID, ItemKind, Run, RunStatus

AT = datetime(2030, 1, 1, tzinfo=UTC)
FLOW = {"concurrency": 2, "priority": 10, "rate_limit": {"limit": 1, "period": "1m"},
        "debounce": {"period": "5s"}, "singleton": {"mode": "skip"},
        "throttle": {"limit": 5, "period": "1s"}, "start_timeout": 30.0,
        "finish_timeout": 60.0}


def _stored_run(spec: TaskSpec) -> Run:
    return Run(id="r1", function_id=HTTP_FUNCTION_ID, status=RunStatus.COMPLETED,
               attempt=1, created_at=AT, updated_at=AT, input=spec.as_input(), queue=spec.queue)


def test_stored_spec_reads_back_whole() -> None:
    spec = TaskSpec(url="https://example.com/x", method="PUT", headers={"A": "b"},
                    body="hi", body_kind="text", callback_url="https://example.com/cb",
                    retries=5, timeout_s=2.5, queue="q", name="n", flow=dict(FLOW))
    assert TaskSpec.of(spec.as_input()) == spec


def test_task_in_stores_what_task_spec_stores() -> None:
    task = TaskIn.model_validate({"url": "https://example.com/x", "body": {"a": 1},
                                  "queue": "q", "priority": 5, "start_timeout": 3})
    assert task.spec() == task.task_spec().as_input()
    assert task.spec()["flow"] == {"priority": 5, "start_timeout": 3.0}


def test_no_flow_means_no_controls() -> None:
    run = TaskSpec(url="https://example.com/x").new_run(AT)
    assert run.flow is None
    assert [i.kind for i in run.items] == [ItemKind.RUN]
    assert run.items[0].due_at == AT


def test_start_timeout_counts_from_the_first_due_time() -> None:
    spec = TaskSpec(url="https://example.com/x", flow={"start_timeout": 30.0,
                                                       "finish_timeout": 60.0})
    run = spec.new_run(AT, due=AT + timedelta(seconds=10))
    timeouts = {i.payload["which"]: i.due_at for i in run.items
                if i.kind is ItemKind.RUN_TIMEOUT}
    assert timeouts == {"start": AT + timedelta(seconds=40),
                        "finish": AT + timedelta(seconds=60)}


def test_new_run_applies_every_control_replay_only_some() -> None:
    spec = TaskSpec(url="https://example.com/x", queue="q", flow=dict(FLOW))
    created = spec.new_run(AT)
    assert created.flow is not None
    assert created.flow.rate_limit is not None and created.flow.debounce is not None
    assert created.flow.singleton is not None
    replay = replay_of(_stored_run(spec), AT)
    assert replay.flow is not None
    assert replay.flow.rate_limit is None and replay.flow.debounce is None
    assert replay.flow.singleton is None
    assert replay.flow.throttle == created.flow.throttle
    assert replay.flow.concurrency == created.flow.concurrency
    # Priority shifts the first RUN item; both timeouts are kept.
    assert replay.items[0].due_at == AT - timedelta(seconds=10)
    assert sorted(i.payload["which"] for i in replay.items
                  if i.kind is ItemKind.RUN_TIMEOUT) == ["finish", "start"]

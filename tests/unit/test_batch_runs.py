"""The batch ingest path builds the same runs as one task at a time, with bulk ids."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from offload import ids
from offload.api.v1.tasks import TaskIn, new_runs

AT = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)
TASKS = [
    {"url": "https://example.com/a"},
    {"url": "https://example.com/b", "method": "PUT", "body": "text",
     "headers": {"Content-Type": "text/csv", "X-A": "1"}, "delay": 30, "name": "n",
     "queue": "q1", "retries": 0, "timeout": 5.5, "callback_url": "https://example.com/cb",
     "failure_callback_url": "https://example.com/f", "correlation_id": "c"},
    {"url": "https://example.com/c", "body": {"x": [1, 2]}, "idempotency_key": "k",
     "not_before": "2027-01-01T00:00:00+02:00"},
    {"url": "https://example.com/d", "body": "plain"},
    {"url": "https://example.com/e", "concurrency_key": "k", "concurrency_limit": 2,
     "start_timeout": 60},
    {"url": "https://example.com/f", "throttle": None},
]


def _shape(run):  # everything but the ids
    items = [(i.kind, i.due_at, i.queue, i.priority, i.payload, i.concurrency_key,
              i.concurrency_limit) for i in run.items]
    return (run.function_id, run.created_at, run.status, run.input, list(run.input),
            run.queue, run.idempotency, run.name, run.correlation_id, run.state, run.flow,
            items)


def test_new_runs_equal_new_run_one_by_one() -> None:
    tasks = [TaskIn.model_validate(t) for t in TASKS]
    many = new_runs(tasks, AT)
    one = [t.new_run(AT) for t in tasks]
    assert [_shape(r) for r in many] == [_shape(r) for r in one]
    made = [r.id for r in many] + [i.id for r in many for i in r.items if i.id]
    assert len(set(made)) == len(made)


@pytest.mark.parametrize("task", TASKS[:4])
def test_plain_input_is_as_input(task: dict) -> None:
    t = TaskIn.model_validate(task)
    assert list(t.plain_input().items()) == list(t.task_spec().as_input().items())


def test_new_ids_sort_after_and_before_new_id() -> None:
    made = [ids.new_id(), *ids.new_ids(3000), ids.new_id(), *ids.new_ids(1), ids.new_id()]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(len(i) == 26 and set(i) <= set(ids._CROCKFORD) for i in made)
    assert ids.new_ids(0) == []


def test_new_ids_encode_as_new_id(monkeypatch: pytest.MonkeyPatch) -> None:
    for start in (0, (1 << 40) - 3, (1 << 70) - 2):
        monkeypatch.setattr(ids, "_last_ms", 10**13)
        monkeypatch.setattr(ids, "_last_random", start)
        bulk = ids.new_ids(6)
        monkeypatch.setattr(ids, "_last_ms", 10**13)
        monkeypatch.setattr(ids, "_last_random", start)
        assert bulk == [ids.new_id() for _ in range(6)]


def test_new_ids_near_the_end_of_the_random_space(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ids, "_last_ms", 10**13)
    monkeypatch.setattr(ids, "_last_random", ids._RANDOM_MAX - 2)
    made = ids.new_ids(5)
    assert len(set(made)) == 5

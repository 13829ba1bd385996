"""Replaying a run: a new run of the same function with the same input and events."""

from __future__ import annotations

from datetime import datetime

from offload.engine.task_spec import TaskSpec
from offload.ids import new_id
from offload.models import HTTP_FUNCTION_ID, ItemKind, Run
from offload.store.base import NewItem, NewRun


def replay_of(run: Run, at: datetime) -> NewRun:
    """A new run with the same function, input and events, linked to ``run``.

    An HTTP task's replay keeps the task's concurrency, throttle, priority and timeouts;
    rate limits and debounce do not apply to a replay, which is asked for on purpose.
    """
    new = NewRun(id=new_id(), function_id=run.function_id, app_id=run.app_id, created_at=at,
                 input=run.input, event_ids=list(run.event_ids), queue=run.queue,
                 replay_of=run.id, correlation_id=run.correlation_id, name=run.name,
                 items=[NewItem(kind=ItemKind.RUN, due_at=at, queue=run.queue or "default")])
    if run.function_id == HTTP_FUNCTION_ID and isinstance(run.input, dict):
        TaskSpec.of(run.input).add_controls(new, replay=True)
    return new

"""Replaying a run: a new run of the same function with the same input and events."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from offload.engine import flow
from offload.engine.timeouts import add_timeouts
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
        _task_controls(new, run.input.get("flow") or {})
    return new


def _task_controls(new: NewRun, fields: dict[str, Any]) -> None:
    timeouts = {k: fields.get(k) for k in ("start_timeout", "finish_timeout")}
    add_timeouts(new, **{k.removesuffix("_timeout"): timedelta(seconds=float(v))
                         for k, v in timeouts.items() if v})
    kept = {k: fields[k] for k in ("concurrency", "concurrency_key", "concurrency_limit",
                                   "throttle", "priority") if fields.get(k) is not None}
    flow.apply_to_new_run(new, flow.for_task(new.queue or "default", **kept))

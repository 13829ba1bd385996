"""Replaying a run: a new run of the same function with the same input and events."""

from __future__ import annotations

from datetime import datetime

from offload.ids import new_id
from offload.models import ItemKind, Run
from offload.store.base import NewItem, NewRun


def replay_of(run: Run, at: datetime) -> NewRun:
    """A new run with the same function, input and events, linked to ``run``."""
    return NewRun(id=new_id(), function_id=run.function_id, app_id=run.app_id, created_at=at,
                  input=run.input, event_ids=list(run.event_ids), queue=run.queue,
                  replay_of=run.id, correlation_id=run.correlation_id,
                  items=[NewItem(kind=ItemKind.RUN, due_at=at, queue=run.queue or "default")])

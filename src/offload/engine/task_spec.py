"""An HTTP task as stored in its run's input, and the one place a task becomes a run.

The API validates a task (``api/v1/tasks.py``) and turns it into a :class:`TaskSpec`;
creating, replaying and rerunning a task all build the new run here, so the
timeouts and flow control a task asked for are applied the same way every time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from offload.engine import flow
from offload.engine.timeouts import add_timeouts
from offload.ids import new_id
from offload.models import HTTP_FUNCTION_ID, ItemKind
from offload.store.base import Idempotency, NewItem, NewRun

FLOW_CONTROLS = ("concurrency", "concurrency_key", "concurrency_limit", "throttle",
                 "rate_limit", "priority", "debounce", "singleton")
"""The flow-control fields of a task (arguments of :func:`flow.for_task`)."""
REPLAYED_CONTROLS = ("concurrency", "concurrency_key", "concurrency_limit", "throttle",
                     "priority")
"""What a replay keeps: rate limits, debounce and singletons do not apply to a run asked
for on purpose."""
TIMEOUT_FIELDS = ("start_timeout", "finish_timeout")
FLOW_FIELDS = frozenset(FLOW_CONTROLS + TIMEOUT_FIELDS)
"""The fields kept under ``flow`` in the stored spec."""


@dataclass(frozen=True)
class TaskSpec:
    """An HTTP task: the call to make, its retries and timeout, and (``flow``) the
    flow-control and timeout fields it was given, kept so replays and reruns honour them.
    """

    url: str
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    body_kind: str = "json"
    """``json`` or ``text``: how the body is sent."""
    callback_url: str | None = None
    failure_callback_url: str | None = None
    retries: int = 3
    timeout_s: float = 30.0
    queue: str = "default"
    name: str | None = None
    flow: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, stored: Mapping[str, Any]) -> TaskSpec:
        """The spec stored in a run's input (missing fields take their defaults)."""
        known = {k: stored[k] for k in cls.__dataclass_fields__ if k in stored}
        known.setdefault("url", "")
        known["flow"] = dict(stored.get("flow") or {})
        return cls(**known)

    def as_input(self) -> dict[str, Any]:
        """The spec as stored in the run's input."""
        return {"url": self.url, "method": self.method, "headers": self.headers,
                "body": self.body, "body_kind": self.body_kind,
                "callback_url": self.callback_url,
                "failure_callback_url": self.failure_callback_url, "retries": self.retries,
                "timeout_s": self.timeout_s, "queue": self.queue, "name": self.name,
                "flow": self.flow}

    def new_run(self, at: datetime, *, due: datetime | None = None,
                idempotency: Idempotency | None = None,
                correlation_id: str | None = None) -> NewRun:
        """The run (and its first queue item, due at ``due``) this task becomes, with its
        timeouts and flow control."""
        due = at if due is None else due
        run = NewRun(id=new_id(), function_id=HTTP_FUNCTION_ID, created_at=at,
                     input=self.as_input(), queue=self.queue, idempotency=idempotency,
                     name=self.name, correlation_id=correlation_id,
                     items=[NewItem(kind=ItemKind.RUN, due_at=due, queue=self.queue)])
        if not self.flow:
            # No flow control and no timeouts: flow.for_task would give settings that
            # apply nothing (run.flow stays None, no timeout items).
            return run
        return self.add_controls(run, waited=due - at)

    def add_controls(self, run: NewRun, *, waited: timedelta = timedelta(0),
                     replay: bool = False) -> NewRun:
        """Put the task's timeouts and flow control on ``run`` (in place; returned).

        ``waited``: how long after its creation the run is first due (the start timeout
        counts from then). ``replay``: keep only :data:`REPLAYED_CONTROLS`.
        """
        fields = self.flow
        start, finish = (fields.get(k) for k in TIMEOUT_FIELDS)
        add_timeouts(run, start=waited + timedelta(seconds=float(start)) if start else None,
                     finish=timedelta(seconds=float(finish)) if finish else None)
        kept = {k: fields[k] for k in (REPLAYED_CONTROLS if replay else FLOW_CONTROLS)
                if fields.get(k) is not None}
        return flow.apply_to_new_run(run, flow.for_task(run.queue or "default", **kept))

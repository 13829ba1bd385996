"""What an accepted event does: start runs, resume waits, cancel runs; and wait timeouts.

One EVENT queue item per stored event. Its fan-out is committed in one change
fenced by that item, so each event starts each matching function exactly once
even when an engine dies halfway through:

* every function with a trigger on the event's name whose ``expression`` (CEL,
  ``event`` = the event) holds gets a run; ``inngest/function.invoked`` starts only
  the function named in ``data._inngest.fn_id``;
* waits for the event's name whose ``if`` holds (``event`` = the waiting run's
  trigger, ``async`` = this event) resume with the event as the step's output;
* ``inngest/function.finished`` resumes the invoke wait with its correlation id;
* runs of functions whose ``cancel`` entry matches are cancelled (before the commit:
  cancelling is idempotent).

A WAIT_TIMEOUT item resumes its wait with ``null`` (wait-for-event) or the invoke
timeout error, unless an event got there first.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from offload import faults
from offload.clock import now
from offload.engine import flow
from offload.engine.catalog import FunctionCatalog
from offload.engine.runs import RunLifecycle
from offload.engine.timeouts import add_timeouts
from offload.errors import ExpressionError
from offload.ids import new_id
from offload.models import (
    Event,
    Function,
    ItemKind,
    QueueItem,
    RunError,
    RunStatus,
    StepKind,
    StepStatus,
    Wait,
)
from offload.protocol.expressions import compile_expression
from offload.protocol.function_config import event_name_matches
from offload.protocol.messages import (
    FUNCTION_FINISHED_EVENT,
    FUNCTION_INVOKED_EVENT,
    INVOKE_TIMEOUT_ERROR,
)
from offload.protocol.runs import attempt_entry
from offload.store.base import (
    Change,
    Fence,
    NewItem,
    NewRun,
    Resume,
    RunFilter,
    StepWrite,
    Store,
)

log = logging.getLogger("offload.triggers")

_LIVE = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.SLEEPING, RunStatus.WAITING)


def _matches(expression: str | None, variables: dict[str, Any]) -> bool:
    """A wait's ``if`` (stored with the wait, compiled through the expression cache)."""
    if not expression:
        return True
    try:
        return compile_expression(expression).matches(variables)
    except ExpressionError:
        return False


def triggered_by(fn: Function, event: dict[str, Any]) -> bool:
    """Whether ``event`` starts a run of ``fn``."""
    if event.get("name") == FUNCTION_INVOKED_EVENT:
        meta = (event.get("data") or {}).get("_inngest") or {}
        return isinstance(meta, dict) and meta.get("fn_id") == fn.id
    return any(trigger.starts_on(event) for trigger in fn.spec.triggers)


def listens(fn: Function, name: str) -> bool:
    """Whether an event named ``name`` may start (any trigger on the name, whatever its
    expression) or cancel a run of ``fn``: if not, ``fn`` never needs to see it."""
    spec = fn.spec
    return (any(event_name_matches(t.event, name) for t in spec.triggers)
            or any(c.event == name for c in spec.cancel))


def with_controls(run: NewRun, fn: Function, events: list[dict[str, Any]]) -> NewRun:
    """``run`` with ``fn``'s flow control (keys evaluated over ``events``) and timeouts.

    Every place that starts a function run (events, cron ticks, invokes) goes through
    here, so they all honour the same configuration.
    """
    spec = fn.spec
    add_timeouts(run, start=spec.start_timeout, finish=spec.finish_timeout)
    settings = flow.for_function(spec.flow, events, fn.id)
    if run.queue is None:
        run.queue = flow.concurrency_key_value(settings, fn.id)
    return flow.apply_to_new_run(run, settings)


def new_run_for(fn: Function, event: Event, at: datetime) -> NewRun:
    """A run of ``fn`` started by ``event``, with its first discovery call due now."""
    run = NewRun(id=new_id(), function_id=fn.id, app_id=fn.app_id, created_at=at,
                 event_ids=[event.id], correlation_id=event.correlation_id,
                 state={"traceparent": event.traceparent} if event.traceparent else {},
                 items=[NewItem(kind=ItemKind.RUN, due_at=at, payload={"attempt": 0})])
    return with_controls(run, fn, [event.as_payload()])


def _resume(wait: Wait, at: datetime, *, output: Any = None,
            error: dict[str, Any] | None = None) -> Resume:
    trigger = wait.trigger or {}
    kind = StepKind.INVOKE if trigger.get("kind") == "invoke" else StepKind.WAIT_FOR_EVENT
    status = StepStatus.FAILED if error is not None else StepStatus.COMPLETED
    step = StepWrite(run_id=wait.run_id, id=wait.step_id,
                     name=str(trigger.get("name") or wait.step_id), kind=kind,
                     status=status, attempts=1, output=output, error=error, ended_at=at,
                     history=[attempt_entry(1, status, wait.created_at, at, error)])
    return Resume(wait_id=wait.id, run_id=wait.run_id, step=step,
                  item=NewItem(kind=ItemKind.RUN, run_id=wait.run_id, due_at=at,
                               payload={"attempt": 0}))


class Triggers:
    """Fans events out and times waits out."""

    def __init__(self, store: Store, *, runs: RunLifecycle,
                 functions: FunctionCatalog | None = None) -> None:
        self.store = store
        self.runs = runs
        self.functions = functions or FunctionCatalog(store, ttl=0)

    async def fan_out(self, item: QueueItem) -> None:
        """Start, resume and cancel runs for the event of ``item``."""
        fence = Fence(item.id, item.lease_token or "")
        event = await self.store.event_get(event_id=str(item.payload.get("event_id", "")))
        if event is None:
            await self.store.apply(Change(fence=fence))
            return
        at = now()
        payload = event.as_payload()
        change = Change(fence=fence)
        functions = await self.functions.all()
        for fn in functions:
            if triggered_by(fn, payload):
                change.runs.append(new_run_for(fn, event, at))
        for wait in await self.store.wait_list(event_name=event.name):
            trigger_event = (wait.trigger or {}).get("event") or {}
            if _matches(wait.expression, {"event": trigger_event, "async": payload}):
                change.resumes.append(_resume(wait, at, output=payload))
        if event.name == FUNCTION_FINISHED_EVENT and isinstance(event.data, dict):
            corr = event.data.get("correlation_id")
            if isinstance(corr, str) and corr:
                for wait in await self.store.wait_list(correlation_id=corr):
                    if "error" in event.data and event.data["error"] is not None:
                        change.resumes.append(_resume(wait, at, error=event.data["error"]))
                    else:
                        change.resumes.append(_resume(wait, at,
                                                      output=event.data.get("result")))
        await self._cancel_matching(functions, payload, at)
        faults.crash_point("fanout.computed", event.name)
        result = await self.store.apply(change)
        if result.cancelled:  # replaced by a singleton run in cancel mode
            await self.runs.announce_cancelled(result.cancelled, "singleton")

    async def _cancel_matching(self, functions: list[Function], payload: dict[str, Any],
                               at: datetime) -> None:
        """Cancel live runs of functions whose ``cancel`` entries match this event."""
        for fn in functions:
            cancels = [c for c in fn.spec.cancel if c.event == payload.get("name")]
            if not cancels:
                continue
            cursor: str | None = None
            while True:
                page = await self.store.run_list(
                    filter=RunFilter(statuses=_LIVE, function_id=fn.id), cursor=cursor,
                    limit=200)
                for run in page.data:
                    events = await self.store.event_get_many(event_ids=run.event_ids[:1])
                    trigger = events[0].as_payload() if events else {}
                    for cancel in cancels:
                        if cancel.timeout is not None and run.created_at + cancel.timeout < at:
                            continue  # counted from the run's start: this rule has lapsed
                        variables = {"event": trigger, "async": payload}
                        if cancel.condition is None or cancel.condition.holds(variables):
                            await self.runs.cancel(run.id, "cancel_event", run=run)
                            break
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor

    async def time_out(self, item: QueueItem) -> None:
        """Resume a wait that reached its timeout (no-op if it was resumed already)."""
        fence = Fence(item.id, item.lease_token or "")
        wait_id = str(item.payload.get("wait_id", ""))
        at = now()
        kind = item.payload.get("kind")
        name = str(item.payload.get("name") or item.payload.get("step_id") or "")
        wait = Wait(id=wait_id, run_id=item.run_id or "",
                    step_id=str(item.payload.get("step_id", "")), event_name=None,
                    expression=None, correlation_id=None,
                    trigger={"name": name, "kind": kind}, expires_at=at, created_at=at)
        if kind == "invoke":
            resume = _resume(wait, at, error=RunError.of(INVOKE_TIMEOUT_ERROR))
        else:
            resume = _resume(wait, at, output=None)
        await self.store.apply(Change(fence=fence, resumes=[resume]))

"""The run lifecycle: the one place a run ends, and replays and reruns start.

A run ends in one of three ways, and every way goes through here:

* its last attempt decides (``completed``, or ``failed`` once retries are spent): the
  executor and the HTTP-task runner commit that outcome with their attempt, in the
  same transaction, with the events :func:`end_events` builds, then call
  :meth:`RunLifecycle.ended`;
* somebody cancels it: the API, the dashboard, a bulk job, a start or finish timeout,
  a ``cancelOn`` event, a singleton replacing it — :meth:`RunLifecycle.cancel`;
* the engine gives up on it: its lease expired too often, or its function is gone —
  :meth:`RunLifecycle.fail`.

Ending writes the new status, drops the run's queue items and waits and emits the
Inngest lifecycle events (``inngest/function.finished`` after every end, plus
``inngest/function.failed`` or ``inngest/function.cancelled``) in one transaction,
guarded so that only the first ender writes them. ``function.finished`` carries the
run's invoke correlation id: its fan-out resumes a parent waiting in ``step.invoke``,
once, with the child's result or error. Then the run's ``/v1/runs/{id}/wait`` callers
in this process are woken, the end is logged and counted.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from offload import metrics
from offload.clock import now
from offload.engine.attempts import RunError
from offload.errors import NotFoundError, ValidationError
from offload.ids import new_id
from offload.logging import log_run
from offload.models import HTTP_FUNCTION_ID, ItemKind, QueueItem, Run, RunStatus, StepKind
from offload.protocol.messages import (
    function_cancelled_event,
    function_failed_event,
    function_finished_event,
)
from offload.protocol.runs import memos_and_stack
from offload.store.base import (
    Change,
    Fence,
    NewEvent,
    NewItem,
    NewRun,
    Rescued,
    RunEnd,
    StepWrite,
    Store,
)

if TYPE_CHECKING:
    from offload.wakes import RunEnds

CancelReason = Literal["api", "dashboard", "bulk", "start_timeout", "finish_timeout",
                       "cancel_event", "singleton"]
"""Why a run was cancelled: the ``reason`` label of ``offload_run_ends_total`` and the
``by`` field of the log line."""

_CANCEL_ERRORS: dict[str, tuple[str, str]] = {
    "api": ("FunctionCancelledError", "cancelled by API"),
    "dashboard": ("FunctionCancelledError", "cancelled from the dashboard"),
    "bulk": ("FunctionCancelledError", "cancelled in bulk"),
    "cancel_event": ("FunctionCancelledError", "cancelled by a cancel event"),
    "singleton": ("FunctionCancelledError", "replaced by a newer run of its singleton key"),
    "start_timeout": ("StartTimeoutError", "the run did not start within its start timeout"),
    "finish_timeout": ("FinishTimeoutError",
                       "the run did not finish within its finish timeout"),
}


def cancel_error(reason: CancelReason, detail: str | None = None) -> dict[str, Any]:
    """The error object a run cancelled for ``reason`` ends with (and its invoker sees)."""
    name, message = _CANCEL_ERRORS[reason]
    return RunError(name, f"{message} ({detail})" if detail else message)


def lease_exhausted_error(expiries: int) -> dict[str, Any]:
    """The error of a run failed because its lease expired ``expiries`` times."""
    return RunError("lease_exhausted", f"the run's lease expired {expiries} times without "
                    "an outcome; an engine may be crashing on it")


def kind_of(run: Run) -> str:
    """``task`` or ``function``: the ``kind`` label of the run metrics."""
    return "task" if run.function_id == HTTP_FUNCTION_ID else "function"


_NO_OUTPUT: Any = object()


def end_events(run: Run, status: RunStatus, *, triggers: list[dict[str, Any]], at: datetime,
               output: Any = _NO_OUTPUT, error: dict[str, Any] | None = None,
               function_id: str | None = None) -> list[NewEvent]:
    """The lifecycle events of a durable-function run ending as ``status``.

    ``triggers`` are the payloads of the events that started the run. ``completed``:
    ``function.finished`` with the result; ``failed``: ``function.failed`` and
    ``function.finished`` with the error; ``cancelled``: ``function.cancelled`` and
    ``function.finished`` with the error. HTTP tasks have none.
    """
    if run.function_id == HTTP_FUNCTION_ID:
        return []
    fn_id = function_id or run.function_id
    common: dict[str, Any] = {"function_id": fn_id, "run_id": run.id, "events": triggers,
                              "ts": at, "correlation_id": run.correlation_id}
    out: list[dict[str, Any]] = []
    if status is RunStatus.COMPLETED:
        out.append(function_finished_event(
            **common, result=None if output is _NO_OUTPUT else output))
    else:
        err = error or RunError("Error", f"run {status.value}")
        if status is RunStatus.CANCELLED:
            out.append(function_cancelled_event(**common, reason=str(err.get("message"))))
        else:
            out.append(function_failed_event(**common, error=err))
        out.append(function_finished_event(**common, error=err))
    return [NewEvent(id=new_id(), name=e["name"], data=e["data"], ts=e["ts"], received_at=at,
                     user=e.get("user")) for e in out]


class Waiters:
    """Callers of ``/v1/runs/{id}/wait`` in this process, woken when their run ends."""

    def __init__(self) -> None:
        self._futures: dict[str, list[asyncio.Future[None]]] = defaultdict(list)

    def wake(self, run_id: str) -> None:
        """Wake everyone waiting for ``run_id``."""
        for future in self._futures.pop(run_id, []):
            if not future.done():
                future.set_result(None)

    async def wait(self, run_id: str, timeout: float) -> None:
        """Return when :meth:`wake` is called for ``run_id``, or after ``timeout`` seconds."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._futures[run_id].append(future)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            pass
        finally:
            waiting = self._futures.get(run_id)
            if waiting and future in waiting:
                waiting.remove(future)
                if not waiting:
                    self._futures.pop(run_id, None)


NewTask = Callable[[Run, Any, datetime], NewRun]
"""Builds the new run of an HTTP task rerun: ``(run, edited fields, at)``."""


class RunLifecycle:
    """Ends runs (the only code that does), wakes their waiters, replays and reruns."""

    def __init__(self, store: Store, *, others: RunEnds | None = None) -> None:
        self.store = store
        self.waiters = Waiters()
        self.others = others
        """The other processes of ``serve --workers``, told of each run this one ends."""

    # -- ending --------------------------------------------------------------------------

    async def cancel(self, run_id: str, reason: CancelReason, *, detail: str | None = None,
                     fence: Fence | None = None, run: Run | None = None) -> Run | None:
        """Cancel a run that has not ended; the cancelled run, or None if it had ended.

        With ``fence``, the queue item that asked for it is consumed in the same commit.
        """
        return await self._end(run_id, RunStatus.CANCELLED, cancel_error(reason, detail),
                               reason=reason, fence=fence, run=run)

    async def fail(self, run_id: str, error: dict[str, Any], *, reason: str,
                   fence: Fence | None = None, run: Run | None = None) -> Run | None:
        """Fail a run that has not ended (the engine gave up on it); None if it had ended."""
        return await self._end(run_id, RunStatus.FAILED, error, reason=reason, fence=fence,
                               run=run)

    async def _end(self, run_id: str, status: RunStatus, error: dict[str, Any], *,
                   reason: str, fence: Fence | None, run: Run | None) -> Run | None:
        if run is None:
            run = await self.store.run_get(run_id=run_id, with_steps=False)
        if run is None or run.status.terminal:
            if fence is not None:
                await self.store.apply(Change(fence=fence))
            return None
        at = now()
        triggers = await self._triggers(run)
        events = end_events(run, status, triggers=triggers, at=at, error=error)
        result = await self.store.apply(Change(fence=fence, ends=[RunEnd(
            run_id=run.id, status=status, at=at, error=error, events=events)]))
        if not result.ended:
            return None
        ended = result.ended[0]
        log_run(ended.id, ended.function_id, status.value,
                correlation_id=ended.correlation_id, error=error, by=reason)
        self.ended(ended.id, status, reason=reason, kind=kind_of(ended))
        return ended

    async def lease_exhausted(self, rescued: Rescued) -> Run | None:
        """Fail the run of a queue item whose lease expired too often (the scheduler's
        ``on_exhausted``); its held-back item is dropped with it."""
        if rescued.run_id is None:
            return None
        return await self.fail(rescued.run_id, lease_exhausted_error(rescued.expiries),
                               reason="lease_exhausted")

    async def timeout_due(self, item: QueueItem) -> None:
        """Cancel the run of a due start/finish timeout item if the timeout still applies
        (a start timeout only before the run started); else just consume the item."""
        fence = Fence(item.id, item.lease_token or "")
        run = await self.store.run_get(run_id=item.run_id or "", with_steps=False)
        which = "start" if item.payload.get("which") == "start" else "finish"
        if run is None or run.status.terminal or (which == "start" and run.started_at is not None):
            await self.store.apply(Change(fence=fence))
            return
        after = timedelta(seconds=float(item.payload.get("after_s", 0)))
        await self.cancel(run.id, "start_timeout" if which == "start" else "finish_timeout",
                          detail=str(after), fence=fence, run=run)

    async def announce_cancelled(self, run_ids: list[str], reason: CancelReason) -> None:
        """Emit the events of runs the store cancelled inside another change (a singleton
        in ``cancel`` mode replaced them) and wake their waiters."""
        at = now()
        for run_id in run_ids:
            run = await self.store.run_get(run_id=run_id, with_steps=False)
            if run is None:
                continue
            events = end_events(run, RunStatus.CANCELLED, triggers=await self._triggers(run),
                                at=at, error=run.error if isinstance(run.error, dict) else None)
            if events:
                await self.store.apply(Change(events=events))
            log_run(run.id, run.function_id, "cancelled", correlation_id=run.correlation_id,
                    error=run.error if isinstance(run.error, dict) else None, by=reason)
            self.ended(run.id, RunStatus.CANCELLED, reason=reason, kind=kind_of(run))

    def ended(self, run_id: str, status: RunStatus | None = None, *, reason: str = "attempt",
              kind: str = "function") -> None:
        """A run ended (committed): count it and wake its waiters, in this process and in
        the API fronts of ``serve --workers`` (a datagram each, :mod:`offload.wakes`)."""
        if status is not None:
            metrics.count_run_end(kind, status.value, reason)
        self.waiters.wake(run_id)
        if self.others is not None:
            self.others.announce(run_id)

    async def wait(self, run_id: str, timeout: float) -> None:
        """Return when this process sees ``run_id`` end, or after ``timeout`` seconds."""
        await self.waiters.wait(run_id, timeout)

    async def _triggers(self, run: Run) -> list[dict[str, Any]]:
        if run.function_id == HTTP_FUNCTION_ID or not run.event_ids:
            return []
        return [e.as_payload() for e in await self.store.event_get_many(
            event_ids=run.event_ids)]

    # -- starting again ------------------------------------------------------------------

    async def replay(self, run: Run) -> Run:
        """Start a new run with the same function, input and events, linked to ``run``."""
        from offload.engine.replay import replay_of

        result = await self.store.apply(Change(runs=[replay_of(run, now())]))
        return result.runs[0][0]

    async def rerun_from_step(self, run: Run, *, step_id: str, input: Any = None,
                              new_task: NewTask) -> Run:
        """A new run that keeps the outputs of the steps finished before ``step_id`` and
        runs from that step on, optionally with edited input.

        HTTP tasks: ``step_id`` ``request`` runs the task again (``new_task`` builds it,
        with ``input`` as the fields to change); ``callback`` delivers the recorded
        outcome again. Durable functions: ``input`` is the new ``data`` of the triggering
        event.
        """
        store = self.store
        if run.steps is None:
            full = await store.run_get(run_id=run.id, with_steps=True)
            if full is None:
                raise NotFoundError(f"no run with id {run.id}")
            run = full
        steps = {s.id: s for s in run.steps or []}
        if step_id not in steps:
            raise ValidationError("body.step_id", f"run {run.id} has no step {step_id[:80]!r}",
                                  "unknown_step")
        at = now()
        if run.function_id == HTTP_FUNCTION_ID:
            if step_id == "callback":
                await store.apply(self._redeliver(run, at))
                return await self._get(run.id)
            new = new_task(run, input, at)
            await store.apply(Change(runs=[new]))
            return await self._get(new.id)
        _, order = memos_and_stack(run.steps or [])
        chosen = steps[step_id]
        if step_id in order:
            keep_ids = order[:order.index(step_id)]
        else:  # not finished: keep everything that finished before it started
            keep_ids = [i for i in order if steps[i].position < chosen.position]
        new_run_id = new_id()
        events: list[NewEvent] = []
        event_ids = list(run.event_ids)
        if input is not None:
            original = await store.event_get(event_id=run.event_ids[0]) \
                if run.event_ids else None
            edited = NewEvent(id=new_id(), name=original.name if original else "offload/rerun",
                              data=input, ts=int(at.timestamp() * 1000), received_at=at,
                              user=original.user if original else None, fanout=False)
            events.append(edited)
            event_ids = [edited.id, *event_ids[1:]]
        new = NewRun(id=new_run_id, function_id=run.function_id, app_id=run.app_id,
                     created_at=at, input=run.input, event_ids=event_ids, queue=run.queue,
                     replay_of=run.id,
                     items=[NewItem(kind=ItemKind.RUN, due_at=at, queue=run.queue or "default")])
        kept = [StepWrite(run_id=new_run_id, id=s.id, name=s.name, kind=s.kind,
                          status=s.status, attempts=s.attempts, input=s.input, output=s.output,
                          error=s.error, started_at=s.started_at, ended_at=s.ended_at)
                for s in (steps[i] for i in keep_ids)
                if s.kind is not StepKind.CALLBACK]
        result = await store.apply(Change(events=events, runs=[new], steps=kept))
        return await self._get(result.runs[0][0].id)

    @staticmethod
    def _redeliver(run: Run, at: datetime) -> Change:
        url = (run.input or {}).get("callback_url") or (run.input or {}).get(
            "failure_callback_url")
        if not url or not run.status.terminal:
            raise ValidationError("body.step_id", "this run has no callback to deliver again",
                                  "not_rerunnable")
        return Change(items=[NewItem(kind=ItemKind.CALLBACK, run_id=run.id, due_at=at,
                                     queue=run.queue or "default",
                                     payload={"url": url, "attempt": 0})])

    async def _get(self, run_id: str) -> Run:
        found = await self.store.run_get(run_id=run_id, with_steps=True)
        assert found is not None
        return found

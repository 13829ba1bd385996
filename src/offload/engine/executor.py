"""Drives one attempt of a durable-function run: call request → SDK response → one commit.

Each RUN queue item of a synced function is one call to the app. Its payload says
which call: ``{"attempt": n}`` is a *discovery* call (``stepId=step``: the SDK
replays the function from the top and reports what it found), ``{"step_id": h,
"attempt": n}`` runs one planned step, ``{"wake": h}`` ends a sleep. The SDK's
answer is recorded in one store transaction fenced by the item's lease, so a
result is written once even if two engines raced on the same item.

Run state is derived from the run's steps where it can be: the memo map is the
completed and failed steps, ``ctx.stack`` is their completion order, and the
*pending* set (parallel steps planned but not finished) is the steps still
``planned`` or ``errored``. ``run.state`` only holds a write counter (``seq``)
and the request version the SDK answered with. Every commit is guarded by the
state it read (``RunPatch.expect_state``): when two parallel steps finish at the
same moment, one commit wins and the other re-reads the steps and decides again,
so exactly one discovery call follows a parallel group (wait mode) and none is
lost.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from offload import faults, metrics
from offload.clock import now
from offload.config import Settings
from offload.engine import attempts
from offload.engine.attempts import RunError
from offload.engine.catalog import FunctionCatalog
from offload.engine.runs import RunLifecycle, end_events
from offload.engine.triggers import listens, with_controls
from offload.errors import (
    OutboundError,
    ProtocolError,
    StaleRunError,
)
from offload.ids import new_id
from offload.logging import log_run
from offload.models import (
    Event,
    Function,
    ItemKind,
    QueueItem,
    Run,
    RunStatus,
    Step,
    StepKind,
    StepStatus,
)
from offload.outbound.http import OutboundClient, send
from offload.outbound.tracing import traceparent
from offload.protocol.canonical import canonical_json
from offload.protocol.messages import (
    FUNCTION_FAILED_EVENT,
    FUNCTION_FINISHED_EVENT,
    MAX_SDK_REQUEST_BYTES,
    MAX_SDK_RESPONSE_BYTES,
    build_call_request,
    build_call_url,
    correlation_id,
    invoke_event,
    invoke_not_found_error,
)
from offload.protocol.opcodes import (
    GeneratorOp,
    Opcode,
    SdkResponse,
    invoke_spec,
    parse_sdk_response,
    sleep_until,
    wait_for_event_spec,
)
from offload.protocol.runs import (
    DONE,
    RUNNABLE,
    attempt_entry,
    memos_and_stack,
    pending_steps,
    server_kind,
)
from offload.protocol.signing import sign_request
from offload.store.base import (
    Change,
    Fence,
    NewEvent,
    NewItem,
    NewRun,
    NewWait,
    RunPatch,
    StepWrite,
    Store,
)

log = logging.getLogger("offload.executor")

DISCOVERY = "step"
"""The ``stepId`` of a discovery call."""
MAX_GUARD_RETRIES = 20
_DONE = DONE
LIFECYCLE_EVENTS = frozenset({FUNCTION_FINISHED_EVENT, FUNCTION_FAILED_EVENT})
"""The events a run's last attempt emits (see ``runs.end_events``)."""


@dataclass
class Call:
    """One call request and what came of it."""

    target: str | None
    attempt: int
    max_attempts: int
    started_at: datetime
    response: SdkResponse
    seconds: float = 0.0
    """How long the call took."""


@dataclass
class Outcome:
    """What :meth:`Executor._plan` decided: the change to commit and whether the run ended."""

    change: Change
    finished: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class _Pass:
    """One pass over a 206's ops: what the handlers found so far."""

    fn: Function
    run: Run
    events: list[Event]
    item: QueueItem
    call: Call
    outcome: Outcome
    at: datetime
    finished_now: set[str] = field(default_factory=set)
    """Steps that ended in this response."""
    planned: list[str] = field(default_factory=list)
    """Steps whose own call this response queued."""
    race: bool = False
    sleeping: bool = False
    waiting: bool = False
    complete: bool = False
    """The function returned: stop reading ops."""


_Handler = Callable[[_Pass, GeneratorOp, Step | None], Awaitable[None]]


class Executor:
    """Runs durable-function attempts for an engine."""

    def __init__(self, store: Store, client: OutboundClient, settings: Settings, *,
                 runs: RunLifecycle, functions: FunctionCatalog | None = None) -> None:
        self.store = store
        self.functions = functions or FunctionCatalog(store, ttl=0)
        self.client = client
        self.settings = settings
        self.runs = runs
        """The run lifecycle: ends runs the executor gives up on, wakes waiters."""
        self._handlers: dict[Opcode, _Handler] = {
            Opcode.StepRun: self._op_step_run, Opcode.Step: self._op_step_run,
            Opcode.StepError: self._op_step_error, Opcode.StepFailed: self._op_step_error,
            Opcode.StepPlanned: self._op_step_planned, Opcode.Sleep: self._op_sleep,
            Opcode.WaitForEvent: self._op_wait_for_event,
            Opcode.InvokeFunction: self._op_invoke,
            Opcode.RunComplete: self._op_run_complete,
            Opcode.SyncRunComplete: self._op_run_complete,
        }
        """One handler per opcode; any other opcode fails its step (``_op_unsupported``)."""

    # -- entry point ---------------------------------------------------------------------

    async def run_attempt(self, item: QueueItem, run: Run) -> None:
        """Make the call ``item`` asks for and record its outcome, fenced by the lease."""
        fence = Fence(item.id, item.lease_token or "")
        fn = await self.functions.get(run.function_id)
        # The claim carries the run with its steps (the memo) and trigger events.
        full = run if run.steps is not None else await self.store.run_get(
            run_id=run.id, with_steps=True)
        if full is None or full.status.terminal:
            await self.store.apply(Change(fence=fence))
            return
        if fn is None:
            await self.runs.fail(full.id, RunError(
                "FunctionNotFound", f"function {run.function_id!r} is not synced any more"),
                reason="function_not_found", fence=fence, run=full)
            return
        wake = item.payload.get("wake")
        if isinstance(wake, str):
            await self._wake(full, fence, item, wake)
            return
        target = item.payload.get("step_id")
        target = target if isinstance(target, str) and target else None
        steps = {s.id: s for s in full.steps or []}
        if target is not None and target in steps and steps[target].status in _DONE:
            # A duplicate of a call whose result is already recorded: nothing to do.
            await self.store.apply(Change(fence=fence))
            return
        events = item.events if item.events is not None and full is run else \
            await self.store.event_get_many(event_ids=full.event_ids)
        call = await self._call(fn, full, events, target,
                                attempt=int(item.payload.get("attempt", 0)))
        faults.crash_point("call.returned", run.function_id)
        for _ in range(MAX_GUARD_RETRIES):
            outcome = await self._plan(fn, full, events, item, call)
            outcome.change.fence = fence
            if outcome.finished:
                await self._quiet_end_events(full, outcome.change)
            try:
                result = await self.store.apply(outcome.change)
                faults.crash_point("write.committed", run.function_id)
            except StaleRunError:
                fresh = await self.store.run_get(run_id=run.id, with_steps=True)
                if fresh is None or fresh.status.terminal:
                    await self.store.apply(Change(fence=fence))
                    return
                full = fresh
                continue
            self._log(full, outcome)
            self._record(call, outcome)
            if result.cancelled:  # an invoked singleton replaced an unfinished run
                await self.runs.announce_cancelled(result.cancelled, "singleton")
            if outcome.finished:
                patch = outcome.change.run_patches[0]
                self.runs.ended(run.id, patch.status)
            return
        raise StaleRunError(f"run {run.id}: gave up after {MAX_GUARD_RETRIES} conflicts")

    async def _quiet_end_events(self, run: Run, change: Change) -> None:
        """Fan the run's lifecycle events out only to waits when nothing else hears them.

        ``function.finished``/``failed`` of a run that no invoke waits for (no
        correlation id), with no synced function triggered by or cancelled on that
        name, can only resume a ``waitForEvent`` on it: the store queues the fan-out
        item only if such a wait exists (issue 10: most runs end with nobody listening).
        """
        if run.correlation_id:
            return
        functions = await self.functions.all()
        for event in change.events:
            if event.fanout and event.name in LIFECYCLE_EVENTS and not any(
                    listens(f, event.name) for f in functions):
                event.fanout_if_waited = True

    @staticmethod
    def _record(call: Call, outcome: Outcome) -> None:
        """The step, outbound and retry metrics of a committed call (the same series as
        HTTP tasks: ``engine.attempts``)."""
        response = call.response
        result = attempts.Outcome.SUCCESS
        if response.kind == "error":
            result = attempts.Outcome.FAIL if response.no_retry else attempts.Outcome.RETRY
        attempts.record_attempt("run", outbound="app", outcome=result, step_status=None,
                                seconds=call.seconds)
        retried = False
        for step in outcome.change.steps:
            if step.kind is StepKind.RUN and step.status in (
                    StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.ERRORED):
                metrics.observe_step("run", step.status.value, call.seconds)
            if step.status is StepStatus.ERRORED:
                attempts.record_retry("step")
                retried = True
        patch = outcome.change.run_patches[0] if outcome.change.run_patches else None
        if not retried and response.kind == "error" and patch is not None \
                and patch.status is RunStatus.QUEUED:
            attempts.record_retry("step")  # a function-level error, retried whole

    def _log(self, run: Run, outcome: Outcome) -> None:
        """One line per step that ended or paused, and one for the run's new status."""
        patch = outcome.change.run_patches[0] if outcome.change.run_patches else None
        for step in outcome.change.steps:
            if step.status in (StepStatus.PLANNED, StepStatus.RUNNING):
                continue
            log_run(run.id, run.function_id, f"step {step.status.value}",
                    attempt=step.attempts, correlation_id=run.correlation_id, step=step.name,
                    step_id=step.id, error=step.error if isinstance(step.error, dict) else None)
        if patch is not None and patch.status is not None:
            log_run(run.id, run.function_id, patch.status.value, attempt=patch.attempt,
                    correlation_id=run.correlation_id,
                    error=patch.error if isinstance(patch.error, dict) else None)

    # -- the call ------------------------------------------------------------------------

    async def _call(self, fn: Function, run: Run, events: list[Event], target: str | None,
                    *, attempt: int) -> Call:
        max_attempts = fn.spec.retries + 1
        memos, stack = memos_and_stack(run.steps or [])
        started = now()
        payloads = [e.as_payload() for e in events] or [
            {"name": "offload/run.started", "data": {}, "ts": int(started.timestamp() * 1000)}]
        version = run.state.get("request_version")

        def request(steps: dict[str, Any], events: list[dict[str, Any]], use_api: bool
                    ) -> dict[str, Any]:
            return build_call_request(
                run_id=run.id, attempt=attempt, max_attempts=max_attempts, events=events,
                steps=steps, stack=stack,
                disable_immediate_execution=bool(pending_steps(run.steps or [])),
                step_id=target or DISCOVERY, use_api=use_api,
                request_version=version if version in (-1, 1, 2) else 2)

        body = request(memos, payloads, False)
        content = canonical_json(body)
        if len(content) > MAX_SDK_REQUEST_BYTES:
            # Too big to send inline: the SDK fetches the events and memoized steps from
            # /v0/runs/{id}/batch and /actions instead (``use_api``), as on Inngest.
            log.info("call request too big to send inline: use_api",
                     extra={"run_id": run.id, "bytes": len(content)})
            body = request({}, payloads[:1], True)
            content = canonical_json(body)
        headers = {"Content-Type": "application/json",
                   "X-Inngest-Server-Kind": server_kind(self.settings),
                   "X-Run-ID": run.id, "X-Inngest-Step-ID": target or DISCOVERY,
                   "X-Inngest-Req-Version": str(body["version"]),
                   "traceparent": traceparent(run.id, run.state.get("traceparent"))}
        if self.settings.signing_key:
            headers["X-Inngest-Signature"] = sign_request(content, self.settings.signing_key,
                                                          started)
        url = build_call_url(fn.spec.call_url(), target or DISCOVERY)
        try:
            answer = await send(self.client, "POST", url, headers=headers, content=content,
                                timeout_s=self.settings.call_timeout_s,
                                max_response_bytes=max(self.settings.max_response_bytes,
                                                       MAX_SDK_RESPONSE_BYTES))
            response = parse_sdk_response(answer.status, answer.headers, answer.body)
        except OutboundError as exc:
            response = SdkResponse(kind="error", output=RunError(type(exc).__name__, str(exc)))
        except ProtocolError as exc:
            response = SdkResponse(kind="error", output=RunError("ProtocolError", str(exc)))
        except (ValueError, UnicodeDecodeError) as exc:
            response = SdkResponse(kind="error", output=RunError(
                "ProtocolError", f"unreadable SDK answer: {exc}"))
        return Call(target, attempt, max_attempts, started, response,
                    (now() - started).total_seconds())

    # -- deciding what to write ---------------------------------------------------------

    def _state(self, run: Run, response: SdkResponse | None = None) -> dict[str, Any]:
        state = dict(run.state)
        state["seq"] = int(state.get("seq", 0)) + 1
        if response is not None and response.request_version in (1, 2):
            state["request_version"] = response.request_version
        return state

    async def _plan(self, fn: Function, run: Run, events: list[Event], item: QueueItem,
                    call: Call) -> Outcome:
        response = call.response
        at = now()
        patch = RunPatch(run_id=run.id, attempt=max(run.attempt, call.attempt + 1),
                         state=self._state(run, response), expect_state=dict(run.state))
        change = Change(run_patches=[patch])
        outcome = Outcome(change)
        if response.kind == "done":
            self._complete(fn, run, events, change, patch, response.output, at)
            outcome.finished = True
            return outcome
        if response.kind == "error":
            return self._function_error(fn, run, events, item, call, outcome, at)
        if not await self._ops(fn, run, events, item, call, outcome, at):
            # Nothing new and nothing outstanding: the function is not deterministic, or
            # the SDK is confused. Retry with backoff like any error, then fail the run.
            call.response = SdkResponse(kind="error", output=RunError(
                "NoProgressError", "the SDK reported only steps that had already finished"))
            outcome = Outcome(Change(run_patches=[patch]))
            patch.status = None
            return self._function_error(fn, run, events, item, call, outcome, at)
        return outcome

    def _complete(self, fn: Function, run: Run, events: list[Event], change: Change,
                  patch: RunPatch, output: Any, at: datetime) -> None:
        patch.status = RunStatus.COMPLETED
        patch.output = output
        patch.error = None
        patch.ended_at = at
        change.delete_waits_of_runs.append(run.id)
        change.events.extend(end_events(run, RunStatus.COMPLETED, function_id=fn.id, at=at,
                                        triggers=[e.as_payload() for e in events],
                                        output=output))

    def _fail(self, fn: Function, run: Run, events: list[Event], change: Change,
              patch: RunPatch, error: dict[str, Any], at: datetime) -> None:
        patch.status = RunStatus.FAILED
        patch.error = error
        patch.ended_at = at
        change.delete_waits_of_runs.append(run.id)
        change.events.extend(end_events(run, RunStatus.FAILED, function_id=fn.id, at=at,
                                        triggers=[e.as_payload() for e in events],
                                        error=error))

    def _function_error(self, fn: Function, run: Run, events: list[Event], item: QueueItem,
                        call: Call, outcome: Outcome, at: datetime) -> Outcome:
        response = call.response
        change = outcome.change
        patch = change.run_patches[0]
        error = dict(response.output or {})
        retry = not response.no_retry and call.attempt + 1 < call.max_attempts
        steps = {s.id: s for s in run.steps or []}
        if call.target is not None:
            known = steps.get(call.target)
            status = StepStatus.ERRORED if retry else StepStatus.FAILED
            change.steps.append(StepWrite(
                run_id=run.id, id=call.target, name=known.name if known else call.target,
                kind=known.kind if known else StepKind.RUN, status=status,
                attempts=call.attempt + 1, error=error, started_at=call.started_at,
                ended_at=None if retry else at,
                history=with_attempt(known, call, status, at, error)))
        if retry:
            delay = attempts.next_retry_delay(attempt=call.attempt,
                                              retry_after=response.retry_after, now=at)
            payload = dict(item.payload)
            payload["attempt"] = call.attempt + 1
            change.items.append(NewItem(kind=ItemKind.RUN, run_id=run.id, due_at=at + delay,
                                        queue=item.queue, payload=payload))
            patch.status = RunStatus.QUEUED
            patch.error = error
            return outcome
        self._fail(fn, run, events, change, patch, error, at)
        outcome.finished = True
        return outcome

    async def _ops(self, fn: Function, run: Run, events: list[Event], item: QueueItem,
                   call: Call, outcome: Outcome, at: datetime) -> bool:
        """Record the ops of a 206; False when they hold nothing new and nothing is due."""
        change = outcome.change
        patch = change.run_patches[0]
        steps = {s.id: s for s in run.steps or []}
        p = _Pass(fn=fn, run=run, events=events, item=item, call=call, outcome=outcome,
                  at=at)
        for op in call.response.ops:
            known = steps.get(op.id)
            if known is not None and known.status in _DONE:
                continue  # recorded once; a repeat report changes nothing
            if known is not None and known.kind not in RUNNABLE:
                # A sleep, wait or invoke reported again while it is still pending (a
                # parallel group re-discovered after its quick siblings ended): progress
                # in flight, not a stall.
                p.sleeping = p.sleeping or known.status is StepStatus.SLEEPING
                p.waiting = p.waiting or known.status is StepStatus.WAITING
                continue
            handler = self._handlers.get(op.op, self._op_unsupported)
            await handler(p, op, known)
            if p.complete:
                return True
        # Who calls the app next: a discovery call once no planned step is outstanding
        # (wait mode), or after each finished step in race mode.
        finished_now, planned = p.finished_now, p.planned
        still_pending = [s.id for s in pending_steps(list(steps.values()))
                         if s.id not in finished_now and s.id != call.target] + planned
        if call.target is not None and call.target not in finished_now \
                and call.target not in planned and call.target in steps:
            # The targeted step did not report itself; leave it pending for a retry.
            still_pending.append(call.target)
        discover = bool(finished_now) and (p.race or not still_pending)
        if not finished_now and not planned and not p.sleeping and not p.waiting \
                and not still_pending:
            return False
        if discover:
            change.items.append(NewItem(kind=ItemKind.RUN, run_id=run.id, due_at=at,
                                        queue=item.queue, payload={"attempt": 0}))
        if discover or planned or still_pending:
            patch.status = RunStatus.RUNNING
        elif p.sleeping:
            patch.status = RunStatus.SLEEPING
        elif p.waiting:
            patch.status = RunStatus.WAITING
        else:
            patch.status = RunStatus.RUNNING
        patch.error = None
        return True

    # -- one handler per opcode (see ``_handlers``) ----------------------------------------

    async def _op_step_run(self, p: _Pass, op: GeneratorOp, known: Step | None) -> None:
        """A step ran and returned: record its output."""
        call, at = p.call, p.at
        p.outcome.change.steps.append(StepWrite(
            run_id=p.run.id, id=op.id, name=op.step_name, kind=_run_kind(known, op),
            status=StepStatus.COMPLETED, attempts=call.attempt + 1, output=op.data,
            error=None, started_at=call.started_at, ended_at=at,
            history=with_attempt(known, call, StepStatus.COMPLETED, at, None)))
        p.finished_now.add(op.id)
        p.race = p.race or _is_race(known, op)

    async def _op_step_error(self, p: _Pass, op: GeneratorOp, known: Step | None) -> None:
        """A step raised: retry it with backoff, or fail it on its last attempt."""
        call, at, response, change = p.call, p.at, p.call.response, p.outcome.change
        error = op.error or RunError("Error", "step failed")
        last = (op.op is Opcode.StepFailed or response.no_retry
                or call.attempt + 1 >= call.max_attempts)
        status = StepStatus.FAILED if last else StepStatus.ERRORED
        change.steps.append(StepWrite(
            run_id=p.run.id, id=op.id, name=op.step_name, kind=_run_kind(known, op),
            status=status, attempts=call.attempt + 1, error=error,
            started_at=call.started_at, ended_at=at if last else None,
            history=with_attempt(known, call, status, at, error)))
        if last:
            p.finished_now.add(op.id)
            p.race = p.race or _is_race(known, op)
        else:
            delay = attempts.next_retry_delay(attempt=call.attempt,
                                              retry_after=response.retry_after, now=at)
            change.items.append(NewItem(
                kind=ItemKind.RUN, run_id=p.run.id, due_at=at + delay, queue=p.item.queue,
                payload={"step_id": op.id, "attempt": call.attempt + 1}))
            p.planned.append(op.id)

    async def _op_step_planned(self, p: _Pass, op: GeneratorOp, known: Step | None) -> None:
        """A parallel step to run: record it and queue its own call."""
        if known is not None or op.id in p.planned:
            return  # already planned: its own call is queued
        change = p.outcome.change
        change.steps.append(StepWrite(
            run_id=p.run.id, id=op.id, name=op.step_name, kind=_run_kind(known, op),
            status=StepStatus.PLANNED, attempts=0,
            input={"parallel_mode": op.parallel_mode}))
        change.items.append(NewItem(kind=ItemKind.RUN, run_id=p.run.id, due_at=p.at,
                                    queue=p.item.queue,
                                    payload={"step_id": op.id, "attempt": 0}))
        p.planned.append(op.id)

    async def _op_sleep(self, p: _Pass, op: GeneratorOp, known: Step | None) -> None:
        """``step.sleep``: record the sleep and queue its wake-up."""
        if known is not None:
            return
        at, change = p.at, p.outcome.change
        until = sleep_until(op, at)
        change.steps.append(StepWrite(
            run_id=p.run.id, id=op.id, name=op.step_name, kind=StepKind.SLEEP,
            status=StepStatus.SLEEPING, input={"until": until.isoformat()},
            started_at=at))
        change.items.append(NewItem(kind=ItemKind.RUN, run_id=p.run.id,
                                    due_at=max(until, at), queue=p.item.queue,
                                    payload={"wake": op.id}))
        p.sleeping = True

    async def _op_wait_for_event(self, p: _Pass, op: GeneratorOp, known: Step | None
                                 ) -> None:
        """``step.waitForEvent``: record the wait and queue its timeout."""
        if known is not None:
            return
        at, change, name = p.at, p.outcome.change, op.step_name
        spec = wait_for_event_spec(op)
        expires = at + spec.timeout
        wait_id = new_id()
        trigger = p.events[0].as_payload() if p.events else {}
        change.steps.append(StepWrite(
            run_id=p.run.id, id=op.id, name=name, kind=StepKind.WAIT_FOR_EVENT,
            status=StepStatus.WAITING,
            input={"event": spec.event, "if": spec.expression,
                   "timeout_at": expires.isoformat()}, started_at=at))
        change.waits.append(NewWait(
            id=wait_id, run_id=p.run.id, step_id=op.id, created_at=at,
            event_name=spec.event, expression=spec.expression,
            trigger={"event": trigger, "name": name, "kind": "event"},
            expires_at=expires))
        change.items.append(NewItem(
            kind=ItemKind.WAIT_TIMEOUT, run_id=p.run.id, due_at=expires,
            queue=p.item.queue, payload={"wait_id": wait_id, "step_id": op.id,
                                         "kind": "event", "name": name}))
        p.waiting = True

    async def _op_invoke(self, p: _Pass, op: GeneratorOp, known: Step | None) -> None:
        """``step.invoke``: start the child run and wait for it."""
        if known is not None:
            return
        p.waiting = await self._invoke(p.fn, p.run, p.item, op, p.outcome.change,
                                       p.at) or p.waiting
        if not p.waiting:
            p.finished_now.add(op.id)

    async def _op_run_complete(self, p: _Pass, op: GeneratorOp, known: Step | None) -> None:
        """The function returned: drop everything else this response planned and finish."""
        change = p.outcome.change
        change.steps.clear()
        change.items.clear()
        change.waits.clear()
        change.runs.clear()
        change.events.clear()
        self._complete(p.fn, p.run, p.events, change, change.run_patches[0], op.data, p.at)
        p.outcome.finished = True
        p.complete = True

    async def _op_unsupported(self, p: _Pass, op: GeneratorOp, known: Step | None) -> None:
        """An opcode offload does not handle: the step fails."""
        call, at = p.call, p.at
        unsupported = RunError("UnsupportedOpcode",
                               f"offload does not support {op.op.value} yet")
        p.outcome.change.steps.append(StepWrite(
            run_id=p.run.id, id=op.id, name=op.step_name, kind=StepKind.RUN,
            status=StepStatus.FAILED, attempts=call.attempt + 1, error=unsupported,
            started_at=call.started_at, ended_at=at,
            history=with_attempt(known, call, StepStatus.FAILED, at, dict(unsupported))))
        p.finished_now.add(op.id)

    async def _invoke(self, fn: Function, run: Run, item: QueueItem, op: GeneratorOp,
                      change: Change, at: datetime) -> bool:
        """Start the invoked run and wait for it; False (step failed) if it cannot start."""
        spec = invoke_spec(op)
        target = await self.functions.get(spec.function_id)
        name = op.step_name
        if target is None:
            error = invoke_not_found_error(spec.function_id)
            change.steps.append(StepWrite(
                run_id=run.id, id=op.id, name=name, kind=StepKind.INVOKE,
                status=StepStatus.FAILED, attempts=1, error=error, started_at=at, ended_at=at,
                history=[attempt_entry(1, StepStatus.FAILED, at, at, error)]))
            return False
        corr = correlation_id(run.id, op.id)
        expires = at + spec.timeout if spec.timeout is not None else None
        event = invoke_event(function_id=target.id, data=spec.data, parent_run_id=run.id,
                             step_id=op.id, ts=at, display_name=name, user=spec.user,
                             source_app_id=fn.app_id, source_fn_id=fn.id, expire=expires)
        event_id = new_id()
        change.events.append(NewEvent(id=event_id, name=event["name"], data=event["data"],
                                      ts=event["ts"], received_at=at, user=event.get("user"),
                                      fanout=False))
        child_id = new_id()
        change.runs.append(with_controls(NewRun(
            id=child_id, function_id=target.id, app_id=target.app_id, created_at=at,
            event_ids=[event_id], correlation_id=corr,
            items=[NewItem(kind=ItemKind.RUN, due_at=at, payload={"attempt": 0})]),
            target, [{**event, "id": event_id}]))
        change.steps.append(StepWrite(
            run_id=run.id, id=op.id, name=name, kind=StepKind.INVOKE, status=StepStatus.WAITING,
            input={"function_id": target.id, "run_id": child_id, "data": spec.data},
            started_at=at))
        wait_id = new_id()
        change.waits.append(NewWait(id=wait_id, run_id=run.id, step_id=op.id, created_at=at,
                                    correlation_id=corr,
                                    trigger={"name": name, "kind": "invoke"},
                                    expires_at=expires))
        if expires is not None:
            change.items.append(NewItem(
                kind=ItemKind.WAIT_TIMEOUT, run_id=run.id, due_at=expires, queue=item.queue,
                payload={"wait_id": wait_id, "step_id": op.id, "kind": "invoke",
                         "name": name}))
        return True

    # -- sleeps and failures -------------------------------------------------------------

    async def _wake(self, run: Run, fence: Fence, item: QueueItem, step_id: str) -> None:
        steps = {s.id: s for s in run.steps or []}
        known = steps.get(step_id)
        at = now()
        change = Change(fence=fence)
        if known is not None and known.status not in _DONE:
            change.steps.append(StepWrite(
                run_id=run.id, id=step_id, name=known.name, kind=StepKind.SLEEP,
                status=StepStatus.COMPLETED, attempts=1, output=None, ended_at=at,
                history=[attempt_entry(1, StepStatus.COMPLETED, known.started_at, at, None)]))
            change.items.append(NewItem(kind=ItemKind.RUN, run_id=run.id, due_at=at,
                                        queue=item.queue, payload={"attempt": 0}))
            change.run_patches.append(RunPatch(run_id=run.id, status=RunStatus.RUNNING))
        await self.store.apply(change)


def with_attempt(known: Step | None, call: Call, status: StepStatus, at: datetime,
                 error: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The step's history with the attempt ``call`` made appended (once per attempt)."""
    history = [h for h in (known.history if known is not None else [])
               if h.get("attempt") != call.attempt + 1]
    return [*history, attempt_entry(call.attempt + 1, status, call.started_at, at, error)]


def _run_kind(known: Step | None, op: GeneratorOp) -> StepKind:
    """``send_event`` for the JS SDK's ``step.sendEvent`` (``opts.type``), else ``run``."""
    if known is not None and known.kind in RUNNABLE:
        return known.kind
    if (op.opts or {}).get("type") == "step.sendEvent":
        return StepKind.SEND_EVENT
    return StepKind.RUN


def _is_race(known: Step | None, op: GeneratorOp) -> bool:
    if op.parallel_mode == "race":
        return True
    return bool(known is not None and isinstance(known.input, dict)
                and known.input.get("parallel_mode") == "race")

"""The built-in ``http`` function: call a target URL, retry, then post the outcome.

A task's run has two steps: ``request`` (kind ``request``: every attempt at the
target) and, when a callback URL is set, ``callback`` (kind ``callback``). Both
are signed per Standard Webhooks with a ``webhook-id`` that stays the same for
every retry of one delivery, so receivers can deduplicate.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import orjson

from offload import faults, metrics
from offload.clock import now
from offload.engine import attempts
from offload.engine.attempts import (
    Outcome,
    RunError,
    classify_status,
    next_retry_delay,
    parse_retry_after,
)
from offload.engine.runs import RunLifecycle
from offload.engine.task_spec import TaskSpec
from offload.errors import ConfigError, OutboundError
from offload.logging import log_run
from offload.models import ItemKind, QueueItem, Run, RunStatus, StepKind, StepStatus
from offload.outbound.http import OutboundClient, OutboundResponse, send
from offload.outbound.tracing import with_traceparent
from offload.outbound.webhooks import sign_headers
from offload.security.secrets import SecretNotFoundError, Vault, scrub
from offload.store.base import Change, Fence, NewItem, RunPatch, StepWrite, Store

log = logging.getLogger("offload.http_tasks")

CALLBACK_RETRIES = 5
"""Retries of a callback delivery (6 attempts over about a minute with backoff)."""
MAX_ATTEMPT_LOG = 20


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one call to a target or callback came to."""

    outcome: Outcome
    started_at: datetime
    ended_at: datetime
    response: OutboundResponse | None
    error: dict[str, Any] | None
    retry_after: timedelta | None


def encode_body(body: Any, body_kind: str) -> tuple[bytes | None, str | None]:
    """The bytes to send and their default content type."""
    if body is None:
        return None, None
    if body_kind == "text":
        return str(body).encode(), "text/plain; charset=utf-8"
    return orjson.dumps(body), "application/json"


def decode_body(response: OutboundResponse) -> Any:
    """A response body as JSON if it says so, else text, else base64."""
    content_type = response.headers.get("content-type", "")
    if "json" in content_type:
        try:
            return orjson.loads(response.body)
        except orjson.JSONDecodeError:
            pass
    try:
        return response.body.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(response.body).decode()}


def describe_response(response: OutboundResponse) -> dict[str, Any]:
    """The stored summary of a response: status, headers, body."""
    return {"status": response.status, "headers": response.headers,
            "body": decode_body(response), "truncated": response.truncated,
            "duration_ms": round(response.elapsed_ms, 3)}


class RunReader:
    """Reads runs (without steps) for claimed items, many in one query.

    Every ``get`` made in one turn of the event loop (the scheduler starts a claimed
    batch's handlers together) is answered by one ``run_get_many`` read instead of one
    ``run_get`` each.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: dict[str, list[asyncio.Future[Run | None]]] = {}

    async def get(self, run_id: str) -> Run | None:
        """The run, or None if it does not exist."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Run | None] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.setdefault(run_id, []).append(future)
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        task = asyncio.ensure_future(self._read(pending))
        task.add_done_callback(_drop_task)

    async def _read(self, pending: dict[str, list[asyncio.Future[Run | None]]]) -> None:
        try:
            runs: dict[str, Run] = await self.store.run_get_many(list(pending))
        except Exception as exc:  # noqa: BLE001 - handed to every reader
            for futures in pending.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            return
        except asyncio.CancelledError:
            for futures in pending.values():
                for future in futures:
                    future.cancel()
            raise
        for run_id, futures in pending.items():
            for future in futures:
                if not future.done():
                    future.set_result(runs.get(run_id))


def _drop_task(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: the readers already got it


class HttpTasks:
    """Runs HTTP-task attempts and callback deliveries."""

    def __init__(self, store: Store, client: OutboundClient, *, webhook_secret: str,
                 max_response_bytes: int, runs: RunLifecycle,
                 vault: Vault | None = None) -> None:
        self.store = store
        self.vault = vault
        """Fills in ``{{ secrets.NAME }}`` references at call time."""
        self.client = client
        self.webhook_secret = webhook_secret
        self.max_response_bytes = max_response_bytes
        self.lifecycle = runs
        """The run lifecycle: counts ended runs and wakes their waiters."""
        self.runs = RunReader(store)
        """Batched run reads for claimed RUN items (see ``Engine._run_item``)."""

    async def _call(self, method: str, url: str, *, msg_id: str, headers: dict[str, str],
                    body: bytes | None, content_type: str | None,
                    timeout_s: float) -> Attempt:
        started = now()
        out = {k: v for k, v in headers.items()}
        if content_type and not any(k.lower() == "content-type" for k in out):
            out["Content-Type"] = content_type
        out.update(sign_headers(self.webhook_secret, msg_id=msg_id, body=body or b"",
                                timestamp=started))
        try:
            response = await send(self.client, method, url, headers=out, content=body,
                                  timeout_s=timeout_s,
                                  max_response_bytes=self.max_response_bytes)
        except OutboundError as exc:
            return Attempt(Outcome.RETRY, started, now(), None,
                           RunError(type(exc).__name__, str(exc)),
                           None)
        outcome = classify_status(response.status)
        error = None
        if outcome is not Outcome.SUCCESS:
            error = RunError("HTTPStatusError",
                             f"{url.split('?')[0]} answered {response.status}")
        retry_after = parse_retry_after(response.headers.get("retry-after"), started)
        return Attempt(outcome, started, now(), response, error, retry_after)

    async def run_attempt(self, item: QueueItem, run: Run) -> None:
        """Call the target once and record the outcome, fenced by the item's lease."""
        spec = TaskSpec.of(run.input)
        attempt_no = run.attempt + 1
        body, content_type = encode_body(spec.body, spec.body_kind)
        revealed: list[str] = []
        try:  # {{ secrets.NAME }} filled in now, so a rotation counts from the next attempt
            url, headers, revealed = await self.vault.resolve_call(
                spec.url, spec.headers or {}) if self.vault else \
                (spec.url, spec.headers or {}, [])
        except (SecretNotFoundError, ConfigError) as exc:
            at = now()
            result = Attempt(Outcome.FAIL, at, at, None, RunError(
                "SecretNotFoundError" if isinstance(exc, SecretNotFoundError)
                else "SecretsKeyError", str(exc)), None)
        else:
            result = await self._call(
                spec.method, url, msg_id=f"msg_{run.id}",
                headers=with_traceparent(headers, run.id, run.state.get("traceparent")),
                body=body, content_type=content_type,
                timeout_s=float(spec.timeout_s))
            if revealed:  # a target echoing a credential must not put it in the run
                result = replace(result, error=scrub(result.error, revealed))
        max_attempts = int(spec.retries) + 1
        response = scrub(describe_response(result.response), revealed) if result.response \
            else None
        log_entry = {"attempt": attempt_no, "started_at": result.started_at.isoformat(),
                     "ended_at": result.ended_at.isoformat(),
                     "status": result.response.status if result.response else None,
                     "error": result.error}
        state = dict(run.state)
        state["attempts"] = (list(state.get("attempts", [])) + [log_entry])[-MAX_ATTEMPT_LOG:]
        step = StepWrite(run_id=run.id, id="request", name="request", kind=StepKind.REQUEST,
                         status=StepStatus.COMPLETED, attempts=attempt_no,
                         input={"method": spec.method, "url": spec.url},
                         output=response, error=result.error, started_at=result.started_at,
                         ended_at=result.ended_at)
        change = Change(fence=Fence(item.id, item.lease_token or ""), steps=[step])
        retry = result.outcome is Outcome.RETRY and attempt_no < max_attempts
        if result.outcome is Outcome.SUCCESS:
            change.run_patches.append(RunPatch(
                run_id=run.id, status=RunStatus.COMPLETED, attempt=attempt_no, output=response,
                error=None, state=state, ended_at=result.ended_at))
        elif retry:
            attempts.record_retry("request")
            delay = next_retry_delay(attempt=attempt_no - 1, retry_after=result.retry_after)
            step.status = StepStatus.ERRORED
            step.ended_at = None
            change.run_patches.append(RunPatch(
                run_id=run.id, status=RunStatus.QUEUED, attempt=attempt_no, error=result.error,
                state=state))
            change.items.append(NewItem(kind=ItemKind.RUN, run_id=run.id,
                                        due_at=result.ended_at + delay, queue=item.queue))
        else:
            step.status = StepStatus.FAILED
            error = dict(result.error or {})
            error["message"] = f"{error.get('message')} (attempt {attempt_no} of {max_attempts})"
            change.run_patches.append(RunPatch(
                run_id=run.id, status=RunStatus.FAILED, attempt=attempt_no, output=response,
                error=error, state=state, ended_at=result.ended_at))
        finished = not retry
        callback = spec.failure_callback_url if result.outcome is not Outcome.SUCCESS \
            else None
        callback = callback or spec.callback_url
        if finished and callback:
            change.items.append(NewItem(kind=ItemKind.CALLBACK, run_id=run.id,
                                        due_at=result.ended_at, queue=item.queue,
                                        payload={"url": callback, "attempt": 0}))
        elapsed = (result.ended_at - result.started_at).total_seconds()
        attempts.record_attempt("request", outbound="target", outcome=result.outcome,
                                step_status=step.status.value, seconds=elapsed)
        faults.crash_point("call.returned", item.queue)
        await metrics.timed_store("apply", self.store.apply(change))
        faults.crash_point("write.committed", item.queue)
        patch = change.run_patches[0]
        log_run(run.id, run.function_id, (patch.status or run.status).value, attempt=attempt_no,
                correlation_id=run.correlation_id, step="request", error=result.error,
                queue=item.queue)
        if finished and patch.status is not None:
            self.lifecycle.ended(run.id, patch.status, kind="task")

    async def deliver_callback(self, item: QueueItem) -> None:
        """POST a finished task's outcome to its callback URL, retrying on failure."""
        fence = Fence(item.id, item.lease_token or "")
        run = await self.store.run_get(run_id=item.run_id or "", with_steps=False)
        if run is None:
            await self.store.apply(Change(fence=fence))
            return
        url = str(item.payload["url"])
        attempt_no = int(item.payload.get("attempt", 0)) + 1
        body = orjson.dumps(callback_body(run))
        result = await self._call("POST", url, msg_id=f"msg_{run.id}_callback",
                                  headers=with_traceparent(None, run.id,
                                                           run.state.get("traceparent")),
                                  body=body,
                                  content_type="application/json",
                                  timeout_s=float((run.input or {}).get("timeout_s", 30.0)))
        ok = result.outcome is Outcome.SUCCESS
        retry = not ok and result.outcome is Outcome.RETRY and attempt_no <= CALLBACK_RETRIES
        step = StepWrite(
            run_id=run.id, id="callback", name="callback", kind=StepKind.CALLBACK,
            status=StepStatus.COMPLETED if ok else (StepStatus.ERRORED if retry
                                                    else StepStatus.FAILED),
            attempts=attempt_no, input={"url": url},
            output=describe_response(result.response) if result.response else None,
            error=result.error, started_at=result.started_at,
            ended_at=None if retry else result.ended_at)
        change = Change(fence=fence, steps=[step])
        if retry:
            attempts.record_retry("callback")
            delay = next_retry_delay(attempt=attempt_no - 1, retry_after=result.retry_after)
            change.items.append(NewItem(kind=ItemKind.CALLBACK, run_id=run.id,
                                        due_at=result.ended_at + delay, queue=item.queue,
                                        payload={"url": url, "attempt": attempt_no}))
        elapsed = (result.ended_at - result.started_at).total_seconds()
        attempts.record_attempt("callback", outbound="callback", outcome=result.outcome,
                                step_status=step.status.value, seconds=elapsed)
        await metrics.timed_store("apply", self.store.apply(change))


def callback_body(run: Run) -> dict[str, Any]:
    """What a callback receives: the run's outcome and the target's response."""
    return {
        "run_id": run.id,
        "status": run.status.value,
        "attempts": run.attempt,
        "response": run.output,
        "error": run.error,
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "ended_at": run.ended_at.isoformat() if run.ended_at else None,
    }

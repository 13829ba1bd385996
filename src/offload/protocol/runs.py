"""What an SDK is told about a run: memos, stack, pending steps, server kind.

Pure functions over stored steps, shared by the executor (call requests), the SDK
routes (``GET /v0/runs/{id}/actions``-style reads), the API (reruns) and app sync.
A function's retries and URL come from its parsed config (``Function.spec``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from offload.models import Step, StepKind, StepStatus
from offload.protocol.messages import memo_error, memo_output

DONE = (StepStatus.COMPLETED, StepStatus.FAILED)
"""Step statuses the SDK memoizes."""
PENDING = (StepStatus.PLANNED, StepStatus.ERRORED, StepStatus.RUNNING)
"""Statuses of planned run steps that have not finished."""
RUNNABLE = (StepKind.RUN, StepKind.SEND_EVENT)
"""Step kinds the app runs itself (planned, retried, memoized as ``{"data"}``)."""
NO_MEMO: Any = object()
"""What :func:`memo_of` returns for a step the SDK must not be told about."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class HasSigningKey(Protocol):
    """Anything that carries the engine's signing key (the engine's Settings)."""

    @property
    def signing_key(self) -> str | None: ...


def server_kind(settings: HasSigningKey) -> str:
    """What offload presents as to SDKs: ``cloud`` (signed requests) with a signing key,
    else ``dev``. Apps in the other mode refuse to sync, with a clear error."""
    return "cloud" if settings.signing_key else "dev"


def memo_of(step: Step) -> Any:
    """What the SDK receives for a finished step, or ``NO_MEMO`` for an unfinished one."""
    if step.status is StepStatus.FAILED:
        return memo_error(step.error or {})
    if step.status is not StepStatus.COMPLETED:
        return NO_MEMO
    if step.kind is StepKind.SLEEP:
        return None
    if step.kind is StepKind.WAIT_FOR_EVENT:
        return step.output
    return memo_output(step.output)


def memos_and_stack(steps: list[Step]) -> tuple[dict[str, Any], list[str]]:
    """The ``steps`` memo map and ``ctx.stack`` (completion order) of a run."""
    done = [s for s in steps if s.status in DONE]
    done.sort(key=lambda s: (s.ended_at or s.started_at or _EPOCH, s.position))
    memos: dict[str, Any] = {}
    for step in done:
        memo = memo_of(step)
        if memo is not NO_MEMO:
            memos[step.id] = memo
    return memos, [s.id for s in done]


def pending_steps(steps: list[Step]) -> list[Step]:
    """Planned steps not finished yet (parallel steps and steps awaiting a retry)."""
    return [s for s in steps if s.kind in RUNNABLE and s.status in PENDING]


def attempt_entry(attempt: int, status: StepStatus, started_at: datetime | None,
                  ended_at: datetime | None, error: dict[str, Any] | None) -> dict[str, Any]:
    """One entry of a step's ``history`` (``duration_ms`` when both ends are known)."""
    duration = (round((ended_at - started_at).total_seconds() * 1000, 3)
                if started_at and ended_at else None)
    return {"attempt": attempt, "status": status.value,
            "started_at": started_at.isoformat() if started_at else None,
            "ended_at": ended_at.isoformat() if ended_at else None, "duration_ms": duration,
            "error": error}

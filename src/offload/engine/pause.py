"""Pausing and resuming a function or a queue.

While a function or queue is paused its new runs are accepted and queued (never
dropped), none of its RUN items starts, and attempts already in flight finish.
Resuming starts the backlog earliest due first, under the function's or queue's
concurrency limits. The pause is a row in the store (``pauses``), so it holds
across restarts and for every engine sharing the database; the claim enforces it
(:func:`offload.store.ops.hold_paused`).
"""

from __future__ import annotations

from typing import Any, Literal

from offload.clock import now
from offload.errors import ValidationError
from offload.models import HTTP_FUNCTION_ID
from offload.store.base import Store
from offload.store.ops import OpsQueries, Pause, QueueInfo, Respace

PauseKind = Literal["function", "queue"]


def ops_store(store: Store) -> OpsQueries:
    """The store's operator queries (both stores have them)."""
    if not isinstance(store, OpsQueries):  # pragma: no cover - every Store is a SqlStore
        raise TypeError(f"{type(store).__name__} has no operator queries")
    return store


async def pause(store: Store, kind: PauseKind, target: str, *, by: str | None = None) -> bool:
    """Pause a function or queue; False if it was paused already."""
    return await ops_store(store).pause_set(kind=kind, target=target, at=now(), by=by)


async def resume(store: Store, kind: PauseKind, target: str) -> bool:
    """Resume a function or queue; False if it was not paused.

    The backlog starts earliest due first. Concurrency limits hold because each claim
    enforces them; a throttle holds because the overdue backlog is spread out again by
    the throttle's interval (see :func:`throttle_of`).
    """
    return await ops_store(store).pause_clear(kind=kind, target=target, now=now(),
                                              respace=await throttle_of(store, kind, target))


async def throttle_of(store: Store, kind: PauseKind, target: str) -> Respace | None:
    """The throttle a resumed backlog must keep to: the function's, or for a queue the
    one its held HTTP tasks were given. None when there is none (or it cannot be read)."""
    from offload.engine import flow

    try:
        if kind == "function" and target != HTTP_FUNCTION_ID:
            fn = await store.function_get(function_id=target)
            if fn is None:
                return None
            rule = flow.for_function(fn.spec.flow, [], fn.id).throttle
            keyed = fn.spec.flow.throttle is not None and fn.spec.flow.throttle.key is not None
        elif kind == "queue":
            fields = await ops_store(store).pause_held_task_flow(kind=kind, target=target)
            spec = (fields or {}).get("throttle")
            if not isinstance(spec, dict):
                return None
            rule = flow.for_task(target, throttle=spec).throttle
            keyed = False
        else:  # every HTTP task: their throttles differ by queue
            return None
    except ValidationError:
        return None
    if rule is None:
        return None
    # A function's throttle key is an expression over each run's event: its state rows
    # are many and unknown here. A task's key is literal: ``rule.key`` is its row.
    return Respace(interval_ms=max(1, rule.period_ms // max(1, rule.limit)),
                   burst=rule.burst, gcra_key=None if keyed else rule.key)


async def pauses(store: Store, kind: PauseKind | None = None) -> dict[str, Pause]:
    """Current pauses by target (of one kind, or every kind keyed ``kind:target``)."""
    found = await ops_store(store).pause_list()
    if kind is not None:
        return {p.target: p for p in found if p.kind == kind}
    return {f"{p.kind}:{p.target}": p for p in found}


async def function_pause(store: Store, function_id: str) -> Pause | None:
    """The function's pause, or None when it is not paused."""
    return (await pauses(store, "function")).get(function_id)


async def queues(store: Store) -> list[QueueInfo]:
    """Every queue with items or a pause, with counts and pause state."""
    return await ops_store(store).queue_list(now=now())


def pause_json(p: Pause | None) -> dict[str, object] | None:
    """A pause as the API shows it (None when not paused)."""
    if p is None:
        return None
    return {"paused_at": p.paused_at.isoformat(), "paused_by": p.paused_by}


def with_pause(function: dict[str, Any], paused: dict[str, Pause]) -> dict[str, Any]:
    """A function's API object with ``paused`` and ``pause`` added."""
    found = paused.get(str(function.get("id")))
    return {**function, "paused": found is not None, "pause": pause_json(found)}


def queue_json(q: QueueInfo) -> dict[str, object]:
    """A queue as the API shows it."""
    return {"name": q.name, "paused": q.pause is not None, "pause": pause_json(q.pause),
            "due": q.due, "scheduled": q.scheduled, "in_flight": q.leased, "held": q.held,
            "oldest_due_at": q.oldest_due_at.isoformat() if q.oldest_due_at else None}

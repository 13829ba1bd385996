"""Start and finish timeouts: a run queued too long, or running too long, is cancelled.

A run with timeouts gets a RUN_TIMEOUT queue item per timeout, written with the run
itself, due when the timeout expires. When it comes due: a *start* timeout cancels
the run if it has not started yet; a *finish* timeout cancels it if it has not ended.
Either way the run ends ``cancelled`` with an error naming the timeout, it never calls
its target or app again, and the item is a no-op for a run that is already done
(:meth:`offload.engine.runs.RunLifecycle.timeout_due`).
Functions set them with the SDKs' ``timeouts: {start, finish}`` (parsed at sync into
``Function.spec``); HTTP tasks with ``start_timeout`` and ``finish_timeout`` (seconds).
"""

from __future__ import annotations

from datetime import timedelta

from offload.models import ItemKind
from offload.store.base import NewItem, NewRun


def add_timeouts(run: NewRun, *, start: timedelta | None = None,
                 finish: timedelta | None = None) -> NewRun:
    """Add the timeout items of ``run`` (in place) and return it."""
    for which, delta in (("start", start), ("finish", finish)):
        if delta is not None and delta > timedelta(0):
            run.items.append(NewItem(kind=ItemKind.RUN_TIMEOUT, due_at=run.created_at + delta,
                                     queue=run.queue or "default",
                                     payload={"which": which,
                                              "after_s": delta.total_seconds()}))
    return run

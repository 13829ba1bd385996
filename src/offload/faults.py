"""Named crash points in the write path, for tests that kill the engine at exact moments.

Off unless the test setting ``OFFLOAD_TEST_CRASH_AT`` names a point (optionally
``point:key``, so only work with that key crashes: an HTTP task's queue, a durable
function's id, or an event name).
When the engine reaches an armed point it sends itself ``SIGKILL``: no cleanup, no
flush, exactly as ``kill -9`` at that line. ``docs/guarantees.md`` states what each
point promises; ``tests/chaos/test_crash_points.py`` checks it.

Points, in the order a task or event goes through them:

``write.uncommitted``
    inside the transaction recording an attempt's result, before the commit.
``run.claimed``
    after a RUN item was claimed (lease taken, run marked running), before any call.
``call.returned``
    after the target answered, before the result is written.
``write.committed``
    after the result was committed, before anyone is told (waiters, callback).
``fanout.computed``
    after an event's fan-out (the runs it starts) was computed, before it is written.
"""

from __future__ import annotations

import logging
import os
import signal

from offload.errors import ConfigError

POINTS = ("write.uncommitted", "run.claimed", "call.returned", "write.committed",
          "fanout.computed")

_armed: tuple[str, str | None] | None = None
log = logging.getLogger("offload.faults")


def parse(spec: str) -> tuple[str, str | None]:
    """``point`` or ``point:key``; ConfigError for an unknown point."""
    point, _, key = spec.partition(":")
    if point not in POINTS:
        raise ConfigError(f"OFFLOAD_TEST_CRASH_AT: unknown crash point {point!r}; "
                          f"use one of {', '.join(POINTS)}")
    return point, key or None


def arm(spec: str | None) -> None:
    """Arm one crash point (None disarms). Called once at engine start."""
    global _armed
    _armed = parse(spec) if spec else None
    if _armed:
        log.warning("crash point armed (test setting)", extra={"point": spec})


def crash_point(name: str, key: str | None = None) -> None:
    """Die here (SIGKILL) if the test armed ``name`` (and ``key``, when it named one)."""
    if _armed is None or _armed[0] != name or (_armed[1] is not None and _armed[1] != key):
        return
    os.kill(os.getpid(), signal.SIGKILL)

"""The engine's per-event and per-call reads of a function's config, timed in process.

Per event: does the event start a run of the function (``triggers.triggered_by``), and
the run it starts with flow control and timeouts (``triggers.with_controls``). Per call:
the function's retries and step URL, as the executor reads them. No store, no I/O: the
function is built once, as the catalog would hold it, and only the reads are timed.

    PYTHONPATH=src .venv/bin/python bench/config_reads.py [--n 20000]

Runs against whichever ``offload`` is importable, so the same script times the code
before and after a change (e.g. a ``git archive`` of the old commit on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

from offload.engine.triggers import triggered_by, with_controls
from offload.models import Function
from offload.store.base import NewRun

URL = "http://app.test/api/inngest?fnId=app-fn&stepId=step"
CONFIG: dict[str, Any] = {
    "id": "app-fn", "name": "fn",
    "triggers": [{"event": "shop/order.*", "expression": "event.data.total > 10"}],
    "steps": {"step": {"id": "step", "name": "step", "runtime": {"type": "http", "url": URL},
                       "retries": {"attempts": 7}}},
    "cancel": [{"event": "shop/order.cancelled", "if": "event.data.id == async.data.id"}],
    "timeouts": {"start": "10s", "finish": "2m"},
    "concurrency": [{"limit": 2, "key": "event.data.user"}],
    "throttle": {"limit": 5, "period": "1m", "key": "event.data.user"},
    "idempotency": "event.data.id",
    "priority": {"run": "event.data.prio"},
}
EVENT = {"name": "shop/order.paid", "id": "e1", "ts": 0, "user": {},
         "data": {"total": 11, "user": "u1", "id": "o1", "prio": 30}}
AT = datetime(2030, 1, 1, tzinfo=UTC)


def per_call_reads() -> Any:
    """What the executor reads from the config for each call, whichever API exists."""
    try:
        from offload.protocol.runs import function_retries, function_url  # type: ignore[attr-defined]

        return lambda fn: (function_retries(fn.config), function_url(fn.config))
    except ImportError:
        return lambda fn: (fn.spec.retries, fn.spec.call_url())


def timed(label: str, n: int, fn: Any) -> float:
    fn()  # warm the caches (CEL compile cache, parsed config)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    us = (time.perf_counter() - start) / n * 1e6
    print(f"{label:<40} {us:8.2f} µs")
    return us


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    n = parser.parse_args().n
    fn = Function(id="app-fn", app_id="app", name="fn", config=CONFIG, created_at=AT,
                  updated_at=AT)
    reads = per_call_reads()
    timed("triggered_by (per event)", n, lambda: triggered_by(fn, EVENT))
    timed("with_controls (per started run)", n, lambda: with_controls(
        NewRun(id="r", function_id=fn.id, created_at=AT), fn, [EVENT]))
    timed("retries + step url (per call)", n, lambda: reads(fn))


if __name__ == "__main__":
    main()

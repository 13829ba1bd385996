"""A claim in one round trip to PostgreSQL, carrying the runs, steps and trigger events.

The general claim (:meth:`QueueOps.queue_claim`) is a transaction of up to seven
round trips: BEGIN, lease the due items, read the pauses, mark the runs running
(returning them), read the durable runs' steps, read their events, COMMIT. When no
pause exists and no claimed item holds a concurrency key — the common case — none of
the checks in between has anything to do, so :func:`claim_sql` does it all in one
statement: leasing the items, marking their runs running and returning each item
with its run, and, for durable functions, the run's steps and events (as JSON
arrays of the same columns the general reads return). Otherwise the statement
raises (``offload:claim_general``, casting a marker to an integer), nothing of it is
written, and the claim goes the general way.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from offload.models import HTTP_FUNCTION_ID, ItemKind, QueueItem
from offload.store.rows import (
    EVENT_COLS,
    RUN_COLS,
    STEP_COLS,
    TERMINAL_SQL,
    row_event,
    row_item,
    row_run,
    row_step,
)

GENERAL = "offload:claim_general"
_ITEM_WIDTH = 14
_RUN_WIDTH = len(RUN_COLS.split(","))


def _prefixed(cols: str, alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in cols.split(","))


def claim_sql(lease_sql: str) -> str:
    """The one-statement claim around ``lease_sql`` (the store's leasing UPDATE, whose
    parameters come first); then two parameters: the time runs start at, twice."""
    return (
        f"WITH c AS ({lease_sql}), "
        f"r AS (UPDATE runs SET status = 'running', started_at = COALESCE(started_at, ?), "
        f"updated_at = ? WHERE id IN (SELECT run_id FROM c WHERE kind = 'run') "
        f"AND status NOT IN {TERMINAL_SQL} RETURNING {RUN_COLS}) "
        "SELECT c.*, "
        "(SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM c WHERE concurrency_key IS NOT NULL OR "
        "concurrency_key2 IS NOT NULL) AND NOT (EXISTS (SELECT 1 FROM c WHERE kind = 'run') "
        "AND EXISTS (SELECT 1 FROM pauses)) THEN 0 "
        f"ELSE CAST((SELECT COUNT(*) FROM c) || ' {GENERAL}' AS INTEGER) END), "
        f"{_prefixed(RUN_COLS, 'r')}, "
        f"CASE WHEN r.function_id <> '{HTTP_FUNCTION_ID}' THEN "
        f"(SELECT json_agg(json_build_array({_prefixed(STEP_COLS, 's')}) ORDER BY s.position)"
        "::text FROM steps s WHERE s.run_id = r.id) END, "
        f"CASE WHEN r.function_id <> '{HTTP_FUNCTION_ID}' THEN "
        f"(SELECT json_agg(json_build_array({_prefixed(EVENT_COLS, 'e')}))::text "
        "FROM events e WHERE e.id IN (SELECT jsonb_array_elements_text(r.event_ids::jsonb))) "
        "END FROM c LEFT JOIN r ON r.id = c.run_id"
    )


def claimed(rows: list[tuple[Any, ...]]) -> list[QueueItem]:
    """The items of a one-statement claim, with what it carried, earliest due first."""
    out: list[QueueItem] = []
    for row in rows:
        item = row_item(row[:_ITEM_WIDTH])
        if item.kind is not ItemKind.RUN or not item.run_id:
            out.append(item)
            continue
        start = _ITEM_WIDTH + 1
        if row[start] is None:  # ended or gone
            out.append(replace(item, carried=True))
            continue
        run = row_run(row[start:start + _RUN_WIDTH])
        if run.function_id == HTTP_FUNCTION_ID:
            out.append(replace(item, carried=True, run=run))
            continue
        steps_json, events_json = row[start + _RUN_WIDTH:start + _RUN_WIDTH + 2]
        steps = [row_step(tuple(s)) for s in orjson.loads(steps_json or "[]")]
        events = {e.id: e for e in (row_event(tuple(x))
                                    for x in orjson.loads(events_json or "[]"))}
        out.append(replace(item, carried=True, run=replace(run, steps=steps),
                           events=[events[i] for i in run.event_ids if i in events]))
    out.sort(key=lambda i: i.due_at)
    return out

"""A fenced change committed in one round trip to PostgreSQL.

The general write path (:meth:`WritePath._apply`) runs a transaction statement by
statement: BEGIN, the fence, each row, NOTIFY, COMMIT — on a durable-function call
that was eight round trips. The changes an attempt or an event's fan-out commits
(fence, run patch, steps, items, events, waits, runs without flow control) need no
answer from the database until the end, so for them
:func:`plan` writes every statement into one simple query, which PostgreSQL runs as
one implicit transaction: all of it commits, or none of it.

The two checks the general path makes between statements are made by the database:
a statement raises (casting a marker to an integer) when the fence no longer holds
(``offload:lease_lost``) or the guarded run patch matched no row
(``offload:stale_run``); the error aborts the whole query. A fenced item that holds a
concurrency slot (``offload:keyed``) also aborts it, and the change goes the general
way, which frees the slot. The same guarantees as the general path, in one trip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from offload.clock import now_ms, to_ms
from offload.ids import new_id
from offload.models import ItemKind
from offload.store.admission import only_concurrency, set_item_concurrency
from offload.store.base import UNSET, WAKE_WITHIN_MS, Change, ChangeResult, NewItem, NewRun
from offload.store.sql.write import (
    _ITEM_INSERT,
    _RUN_INSERT,
    EVENT_INSERT,
    WAIT_INSERT,
    WAITED_ITEM_INSERT,
    _item_params,
    _run_params,
    _stored_run,
    event_params,
    patch_sql,
    step_sql,
    stored_event,
    wait_params,
    waited_item_params,
)

LEASE_LOST = "offload:lease_lost"
STALE_RUN = "offload:stale_run"
KEYED = "offload:keyed"


def _fail_unless(condition: str, marker: str) -> str:
    # Not a constant: only evaluated (and raising) when the branch is taken.
    return f"CASE WHEN {condition} THEN NULL ELSE CAST(COUNT(*) || ' {marker}' AS INTEGER) END"


_FENCE = (
    "WITH d AS (DELETE FROM queue_items WHERE id = ? AND lease_token = ? "
    "RETURNING concurrency_key, concurrency_key2) SELECT "
    f"{_fail_unless('COUNT(*) > 0', LEASE_LOST)}, "
    f"{_fail_unless('COUNT(concurrency_key) + COUNT(concurrency_key2) = 0', KEYED)} FROM d"
)
_INHERITING_ITEM_INSERT = (
    # A RUN item takes its run's concurrency keys (admission.inherit_concurrency).
    "INSERT INTO queue_items (id, kind, run_id, due_at, priority, queue, concurrency_key, "
    "payload, created_at, concurrency_limit, concurrency_key2, concurrency_limit2) "
    "SELECT ?, ?, ?, ?, ?, ?, c->0->>0, ?, ?, (c->0->>1)::integer, c->1->>0, "
    "(c->1->>1)::integer FROM (SELECT (SELECT concurrency::jsonb FROM runs WHERE id = ?) "
    "AS c) r"
)
_RUN_EVENT_INSERT = ("INSERT INTO run_events (event_id, run_id) VALUES (?, ?) "
                     "ON CONFLICT DO NOTHING")
_NOTIFY_IF_WAITED = ("SELECT pg_notify('offload_work', '') WHERE EXISTS "
                     "(SELECT 1 FROM waits WHERE event_name = ?)")


@dataclass
class Plan:
    """The statements of one change, and what applying it returns."""

    sql: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    result: ChangeResult = field(default_factory=ChangeResult)

    def add(self, sql: str, params: tuple[Any, ...]) -> None:
        self.sql.append(sql)
        self.params.extend(params)

    def query(self) -> str:
        """The statements as one query with ``%s`` placeholders (psycopg's)."""
        return "; ".join(s.replace("%", "%%").replace("?", "%s") for s in self.sql)


def plan(change: Change) -> Plan | None:
    """The one-trip form of a fenced change, or None if it needs the general path."""
    fence = change.fence
    if (fence is None or change.keep_fenced_item or change.resumes
            or not all(_plain(run) for run in change.runs)
            or change.ends or change.cron_tick is not None or change.bulk_jobs
            or change.bulk_progress
            or any(e.external_id is not None for e in change.events)):
        return None
    p = Plan()
    result = p.result
    p.add(_FENCE, (fence.item_id, fence.lease_token))
    wake_before = now_ms() + WAKE_WITHIN_MS
    notify = False
    waited: list[str] = []
    for event in change.events:
        p.add(EVENT_INSERT, event_params(event))
        result.events.append((stored_event(event), True))
        if event.fanout and event.fanout_if_waited:
            p.add(WAITED_ITEM_INSERT, waited_item_params(event))
            waited.append(event.name)
        elif event.fanout:
            notify |= _item(p, NewItem(kind=ItemKind.EVENT, due_at=event.received_at,
                                       payload={"event_id": event.id}), wake_before)
    for run in change.runs:  # an event's fan-out: runs without flow control to apply
        p.add(_RUN_INSERT, _run_params(run))
        for event_id in run.event_ids:
            p.add(_RUN_EVENT_INSERT, (event_id, run.id))
        concurrency = run.flow.concurrency if run.flow is not None else []
        for item in run.items:
            item.run_id = run.id
            set_item_concurrency(item, concurrency)
            notify |= _item(p, item, wake_before)
        result.outcomes.append("created")
        result.runs.append((_stored_run(run), True))
    for patch in change.run_patches:
        sql, params = patch_sql(patch)
        if patch.expect_state is not UNSET:
            sql = (f"WITH u AS ({sql} RETURNING 1) SELECT "
                   f"{_fail_unless('COUNT(*) > 0', STALE_RUN)} FROM u")
        p.add(sql, params)
    for step in change.steps:
        p.add(*step_sql(step))
    for item in change.items:
        notify |= _item(p, item, wake_before)
    if change.delete_waits_of_runs:
        ids = change.delete_waits_of_runs
        p.add(f"DELETE FROM waits WHERE run_id IN ({', '.join('?' * len(ids))})", tuple(ids))
    for wait in change.waits:
        p.add(WAIT_INSERT, wait_params(wait))
    if notify:
        p.add("NOTIFY offload_work", ())
    else:
        for name in dict.fromkeys(waited):
            p.add(_NOTIFY_IF_WAITED, (name,))
    return p


def _plain(run: NewRun) -> bool:
    """A run whose insert needs no decision in the transaction: no idempotency key and
    no flow control but concurrency keys (which go on its items as they are)."""
    flow = run.flow
    return run.idempotency is None and (flow is None or (
        only_concurrency(run) and flow.throttle is None))


def _item(p: Plan, item: NewItem, wake_before: int) -> bool:
    """Add an item's insert; whether it is due soon enough to wake the schedulers."""
    item_id = item.id or new_id()
    if item.kind is ItemKind.RUN and item.run_id is not None and item.concurrency_key is None:
        params = _item_params(item, item_id)
        p.add(_INHERITING_ITEM_INSERT, (*params[:6], *params[7:9], item.run_id))
    else:
        p.add(_ITEM_INSERT, _item_params(item, item_id))
    p.result.enqueued += 1
    return to_ms(item.due_at) <= wake_before

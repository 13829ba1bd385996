"""Flow control inside the store's transactions: concurrency, GCRA, debounce, batch, singleton.

The engine decides *what* applies to a run (``engine/flow.py`` turns a function config
or task spec into a :class:`~offload.store.base.RunFlow`); these functions enforce it
atomically with the write that creates, claims or finishes work, on both databases.

Concurrency. A RUN item carries up to two ``(key, limit)`` pairs. A claim leases due
items first, then, holding a per-key lock (``pg_advisory_xact_lock`` on PostgreSQL,
taken in sorted key order, so concurrent claims cannot over-admit; SQLite has one
writer), counts the leased items of each key and gives back the items over a limit,
marking them *blocked*, together with every other due item of a full key. Blocked
items are out of the ready index, so a saturated key costs later claims nothing.
Whenever a leased item of a key stops being leased (finished, released, cancelled,
rescued after a crash) one blocked item of that key is unblocked, earliest due first;
that is what makes priority order hold under a saturated limit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from offload.clock import to_ms
from offload.ids import new_id
from offload.models import ItemKind, Run, RunError, RunStatus
from offload.store.rows import RUN_COLS, TERMINAL_SQL, Tx, dumps, loads, row_run

if TYPE_CHECKING:
    from offload.store.base import ChangeResult, ConcurrencyLimit, Gcra, NewItem, NewRun


class SqlStore(Protocol):
    """What admission needs from the SQL store it runs inside (a dialect's locking
    clauses and two of its write helpers) — a protocol, so this module does not import
    :mod:`offload.store.sql`, which imports it."""

    share_locked: str
    skip_locked: str

    def _lock_keys(self, tx: Tx, keys: list[str]) -> None: ...

    def _insert_run_row(self, tx: Tx, run: NewRun) -> tuple[Run, bool]: ...

BLOCK_BATCH = 1000
"""Due items of a full key blocked per claim; the rest are blocked by later claims."""

_COLUMNS = ("concurrency_key", "concurrency_key2")


def _dumps(value: Any) -> str:
    return dumps(value)


# -- concurrency ---------------------------------------------------------------------------


def set_item_concurrency(item: NewItem, limits: Sequence[ConcurrencyLimit]) -> None:
    """Copy up to two concurrency limits onto a RUN item."""
    if item.kind is not ItemKind.RUN or not limits:
        return
    item.concurrency_key, item.concurrency_limit = limits[0].key, limits[0].limit
    if len(limits) > 1:
        item.concurrency_key2, item.concurrency_limit2 = limits[1].key, limits[1].limit


def only_concurrency(run: NewRun) -> bool:
    """True when nothing but concurrency limits applies: no work before the insert."""
    flow = run.flow
    return flow is None or not (flow.throttle or flow.rate_limit or flow.debounce
                                or flow.batch or flow.singleton)


def inherit_concurrency(tx: Tx, item: NewItem) -> None:
    """Give a RUN item without keys the concurrency keys of its run (retries, resumes)."""
    if item.kind is not ItemKind.RUN or item.run_id is None or item.concurrency_key is not None:
        return
    rows = tx.execute("SELECT concurrency FROM runs WHERE id = ?", (item.run_id,))
    if not rows or not rows[0][0]:
        return
    from offload.store.base import ConcurrencyLimit
    set_item_concurrency(item, [ConcurrencyLimit(k, int(n)) for k, n in loads(rows[0][0])])


def item_limits(row: Sequence[Any]) -> list[tuple[str, int]]:
    """``(key, limit)`` pairs of a claimed row's trailing (key, limit, key2, limit2) columns."""
    out: list[tuple[str, int]] = []
    for key, limit in ((row[0], row[1]), (row[2], row[3])):
        if key is not None and limit is not None and limit > 0:
            out.append((key, int(limit)))
    return out


def leased_counts(store: SqlStore, tx: Tx, keys: Sequence[str], *, lock: bool = False
                  ) -> Counter[str]:
    """Leased items holding a slot of each key (in either key column).

    With ``lock`` (PostgreSQL) the counted rows are locked FOR SHARE: a transaction that
    is freeing one of those slots right now (a finished, released, cancelled or rescued
    item) is waited for, so the count never includes a slot whose release could not see
    the items this claim is about to block. That is why freeing a slot needs no lock.
    """
    marks = ", ".join("?" for _ in keys)
    suffix = store.share_locked if lock else ""
    counts: Counter[str] = Counter()
    for column in _COLUMNS:  # one statement per column: an OR of both plans badly
        rows = tx.execute(
            f"SELECT {column} FROM queue_items WHERE lease_owner IS NOT NULL AND {column} IS "
            f"NOT NULL AND {column} IN ({marks}){suffix}", keys)
        counts.update(r[0] for r in rows)
    return counts


def _admit(keyed: list[tuple[str, Any, list[tuple[str, int]]]], held: dict[str, int]
           ) -> tuple[list[str], set[str]]:
    """Admit earliest due first while every key has room; (given back ids, full keys)."""
    revoked: list[str] = []
    full: set[str] = set()
    for item_id, _, limits in sorted(keyed, key=lambda e: e[1]):
        if all(held[k] < limit for k, limit in limits):
            for k, _ in limits:
                held[k] += 1
        else:
            revoked.append(item_id)
            full.update(k for k, limit in limits if held[k] >= limit)
    return revoked, full


def enforce_concurrency(store: SqlStore, tx: Tx,
                        keyed: list[tuple[str, Any, list[tuple[str, int]]]],
                        now_ms: int) -> set[str]:
    """Give back claimed items over their keys' limits; the ids given back.

    ``keyed`` holds ``(item_id, due_at, [(key, limit), ...])`` of items this claim just
    leased. Items are admitted earliest due first while every key of the item has room.
    Counting takes no row locks unless some key looks full; then the full keys are
    counted again under FOR SHARE before anything is blocked (see :func:`leased_counts`).
    """
    keys = sorted({k for _, _, limits in keyed for k, _ in limits})
    store._lock_keys(tx, keys)
    in_batch = Counter(k for _, _, limits in keyed for k, _ in limits)
    leased = leased_counts(store, tx, keys)
    revoked, full = _admit(keyed, {k: leased[k] - in_batch[k] for k in keys})
    if revoked and store.share_locked:
        recount = leased_counts(store, tx, sorted(full), lock=True)
        for k in full:
            leased[k] = recount[k]
        revoked, full = _admit(keyed, {k: leased[k] - in_batch[k] for k in keys})
    if revoked:
        tx.execute("UPDATE queue_items SET lease_owner = NULL, lease_token = NULL, "
                   "lease_expires_at = NULL, blocked = 1 WHERE id IN "
                   f"({', '.join('?' for _ in revoked)})", revoked)
    if full:
        marks = ", ".join("?" for _ in full)
        for column in _COLUMNS:
            tx.execute(
                "UPDATE queue_items SET blocked = 1 WHERE id IN (SELECT id FROM queue_items "
                f"WHERE {column} IN ({marks}) AND lease_owner IS NULL AND blocked = 0 AND "
                f"{column} IS NOT NULL AND due_at <= ? LIMIT {BLOCK_BATCH}{store.skip_locked})",
                (*sorted(full), now_ms))
    return set(revoked)


def unblock(store: SqlStore, tx: Tx, keys: Iterable[str | None]) -> None:
    """A slot of each key freed: make its earliest-due blocked item claimable again.

    Runs after the write that freed the slot, in the same transaction (see
    :func:`leased_counts` for why no lock is needed). One cheap statement when nothing
    of these keys is blocked, the common case.
    """
    wanted = sorted({k for k in keys if k is not None})
    if not wanted:
        return
    marks = ", ".join("?" for _ in wanted)
    rows = tx.execute(
        f"SELECT concurrency_key FROM queue_items WHERE blocked = 1 AND concurrency_key IN "
        f"({marks}) UNION SELECT concurrency_key2 FROM queue_items WHERE blocked = 1 AND "
        f"concurrency_key2 IN ({marks})", (*wanted, *wanted))
    for key in sorted({r[0] for r in rows}):
        for column in _COLUMNS:
            tx.execute(
                "UPDATE queue_items SET blocked = 0 WHERE id IN (SELECT id FROM queue_items "
                f"WHERE blocked = 1 AND {column} = ? ORDER BY due_at LIMIT 1"
                f"{store.skip_locked})", (key,))
            if tx.rowcount > 0:
                tx.notify = True
                break


def freed_keys(rows: Iterable[Sequence[Any]]) -> list[str]:
    """Keys whose slot frees when these items go: rows of (key, key2, leased, blocked)."""
    out: list[str] = []
    for key, key2, leased, blocked in rows:
        if leased or not blocked:
            out.extend(k for k in (key, key2) if k is not None)
    return out


# -- GCRA: throttle (delay) and rate limit (drop) ----------------------------------------


def _interval(rule: Gcra) -> int:
    return max(1, rule.period_ms // max(1, rule.limit))


def throttle_start(tx: Tx, rule: Gcra, arrival_ms: int) -> int:
    """When a run arriving at ``arrival_ms`` may start: GCRA, ``burst`` back to back."""
    interval = _interval(rule)
    tolerance = interval * max(0, rule.burst - 1)
    rows = tx.execute(
        "INSERT INTO flow_gcra (key, tat) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
        "tat = (CASE WHEN flow_gcra.tat > ? THEN flow_gcra.tat ELSE ? END) + ? RETURNING tat",
        (rule.key, arrival_ms + interval, arrival_ms, arrival_ms, interval))
    tat = int(rows[0][0])
    return max(arrival_ms, tat - interval - tolerance)


def rate_limit_admits(tx: Tx, rule: Gcra, arrival_ms: int) -> bool:
    """Whether a run arriving now is within its rate limit (and count it if so)."""
    interval = _interval(rule)
    tolerance = max(0, rule.period_ms - interval)
    rows = tx.execute(
        "INSERT INTO flow_gcra (key, tat) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
        "tat = (CASE WHEN flow_gcra.tat > ? THEN flow_gcra.tat ELSE ? END) + ? "
        "WHERE flow_gcra.tat - ? <= ? RETURNING tat",
        (rule.key, arrival_ms + interval, arrival_ms, arrival_ms, interval, tolerance,
         arrival_ms))
    return bool(rows)


# -- admission of a new run ----------------------------------------------------------------


def first_run_item(run: NewRun) -> NewItem | None:
    """The RUN item that starts ``run`` (given an id, so flow tables can point at it)."""
    for item in run.items:
        if item.kind is ItemKind.RUN:
            if item.id is None:
                item.id = new_id()
            return item
    return None


def skip_run(store: SqlStore, tx: Tx, run: NewRun, reason: str, message: str
             ) -> tuple[Run, bool]:
    """Record ``run`` as cancelled without queueing it (rate limited, singleton skip)."""
    error = RunError(reason, message)
    run.status = RunStatus.CANCELLED
    run.items = []
    run.flow = None
    stored, created = store._insert_run_row(tx, run)
    at = to_ms(run.created_at)
    tx.execute("UPDATE runs SET error = ?, ended_at = ? WHERE id = ?",
               (_dumps(error), at, run.id))
    return replace(stored, error=error, ended_at=run.created_at), created


def _attach_events(tx: Tx, run_id: str, event_ids: list[str], *, replace_ids: bool,
                   input_: Any, now_ms: int) -> None:
    if replace_ids:
        tx.execute("UPDATE runs SET event_ids = ?, input = ?, updated_at = ? WHERE id = ?",
                   (_dumps(event_ids), _dumps(input_), now_ms, run_id))
    else:
        rows = tx.execute("SELECT event_ids FROM runs WHERE id = ?", (run_id,))
        ids = (loads(rows[0][0]) or []) if rows else []
        tx.execute("UPDATE runs SET event_ids = ?, updated_at = ? WHERE id = ?",
                   (_dumps(ids + [e for e in event_ids if e not in ids]), now_ms, run_id))
    for event_id in event_ids:
        tx.execute("INSERT INTO run_events (event_id, run_id) VALUES (?, ?) "
                   "ON CONFLICT DO NOTHING", (event_id, run_id))


def _lock_row(tx: Tx, table: str, key: str, run_id: str, item_id: str, now_ms: int,
              extra: str = "", extra_values: tuple[Any, ...] = ()) -> tuple[Any, ...]:
    """Insert the flow row for ``key`` or lock and return the existing one."""
    columns = "key, run_id, item_id, first_at" + extra
    marks = ", ".join("?" for _ in range(4 + len(extra_values)))
    rows = tx.execute(
        f"INSERT INTO {table} ({columns}) VALUES ({marks}) ON CONFLICT (key) DO UPDATE SET "
        f"key = excluded.key RETURNING run_id, item_id, first_at{extra}",
        (key, run_id, item_id, now_ms, *extra_values))
    return rows[0]


def _existing_run(tx: Tx, run_id: str) -> Run:
    return row_run(tx.execute(f"SELECT {RUN_COLS} FROM runs WHERE id = ?", (run_id,))[0])


def admit(store: SqlStore, tx: Tx, run: NewRun, result: ChangeResult
          ) -> tuple[tuple[Run, bool], str] | None:
    """Apply rate limit, singleton, debounce and batch before ``run`` is inserted.

    Returns the outcome when flow control decided instead of a plain insert (the run
    was dropped, or merged into an open debounce or batch); None to insert the run.
    """
    flow = run.flow
    if flow is None:
        return None
    at = to_ms(run.created_at)
    if flow.rate_limit is not None and not rate_limit_admits(tx, flow.rate_limit, at):
        return skip_run(store, tx, run, "rate_limited",
                        f"rate limit {flow.rate_limit.limit} per "
                        f"{flow.rate_limit.period_ms} ms reached for key "
                        f"{flow.rate_limit.key!r}; the run was dropped"), "rate_limited"
    if flow.singleton is not None:
        rows = tx.execute(
            "INSERT INTO flow_singletons (key, run_id) VALUES (?, ?) ON CONFLICT (key) DO "
            "UPDATE SET key = excluded.key RETURNING run_id", (flow.singleton.key, run.id))
        holder = rows[0][0]
        if holder != run.id:
            status = tx.execute("SELECT status FROM runs WHERE id = ?", (holder,))
            running = bool(status) and not RunStatus(status[0][0]).terminal
            if running and flow.singleton.mode == "skip":
                return skip_run(store, tx, run, "singleton_skipped",
                                f"run {holder} of singleton key {flow.singleton.key!r} has "
                                "not finished; the new run was skipped"), "skipped"
            if running and cancel_run(store, tx, holder, run.created_at,
                                      RunError("singleton_cancelled",
                                               f"replaced by run {run.id}")) is not None:
                result.cancelled.append(holder)
            tx.execute("UPDATE flow_singletons SET run_id = ? WHERE key = ?",
                       (run.id, flow.singleton.key))
    item = first_run_item(run)
    if item is None:
        return None
    if flow.debounce is not None:
        return _debounce(tx, run, item, at)
    if flow.batch is not None:
        return _batch(tx, run, item, at)
    return None


def _debounce(tx: Tx, run: NewRun, item: NewItem, at: int
              ) -> tuple[tuple[Run, bool], str] | None:
    rule = run.flow.debounce if run.flow else None
    assert rule is not None and item.id is not None
    base = max(at, to_ms(item.due_at))
    holder, holder_item, first_at = _lock_row(tx, "flow_debounces", rule.key, run.id,
                                              item.id, at)[:3]
    if holder != run.id:
        due = base + rule.period_ms
        if rule.timeout_ms is not None:
            due = min(due, int(first_at) + rule.timeout_ms)
        tx.execute("UPDATE queue_items SET due_at = ? WHERE id = ? AND lease_owner IS NULL",
                   (max(due, at), holder_item))
        if tx.rowcount > 0:
            _attach_events(tx, holder, list(run.event_ids), replace_ids=True, input_=run.input,
                           now_ms=at)
            tx.notify = True
            return (_existing_run(tx, holder), False), "debounced"
        tx.execute("UPDATE flow_debounces SET run_id = ?, item_id = ?, first_at = ? "
                   "WHERE key = ?", (run.id, item.id, at, rule.key))
    due = base + rule.period_ms
    if rule.timeout_ms is not None:
        due = min(due, at + rule.timeout_ms)
    from offload.clock import from_ms

    item.due_at = from_ms(due) or item.due_at
    return None


def _batch(tx: Tx, run: NewRun, item: NewItem, at: int) -> tuple[tuple[Run, bool], str] | None:
    rule = run.flow.batch if run.flow else None
    assert rule is not None and item.id is not None
    from offload.clock import from_ms

    if rule.max_size <= 1:
        return None
    holder, holder_item, _, size = _lock_row(tx, "flow_batches", rule.key, run.id, item.id,
                                             at, ", size", (1,))
    if holder != run.id:
        full = int(size) + 1 >= rule.max_size
        if full:
            tx.execute("UPDATE queue_items SET due_at = ? WHERE id = ? AND lease_owner IS NULL",
                       (at, holder_item))
        else:
            tx.execute("UPDATE queue_items SET due_at = due_at WHERE id = ? AND "
                       "lease_owner IS NULL", (holder_item,))
        if tx.rowcount > 0:
            _attach_events(tx, holder, list(run.event_ids), replace_ids=False, input_=None,
                           now_ms=at)
            if full:
                tx.execute("DELETE FROM flow_batches WHERE key = ?", (rule.key,))
                tx.notify = True
            else:
                tx.execute("UPDATE flow_batches SET size = size + 1 WHERE key = ?", (rule.key,))
            return (_existing_run(tx, holder), False), "batched"
        tx.execute("UPDATE flow_batches SET run_id = ?, item_id = ?, first_at = ?, size = 1 "
                   "WHERE key = ?", (run.id, item.id, at, rule.key))
    item.due_at = from_ms(max(at, to_ms(item.due_at)) + rule.timeout_ms) or item.due_at
    return None


def prepare_items(tx: Tx, run: NewRun) -> None:
    """Put the run's concurrency keys on its RUN items and throttle its first start."""
    flow = run.flow
    if flow is None:
        return
    for item in run.items:
        set_item_concurrency(item, flow.concurrency)
    first = first_run_item(run) if flow.throttle is not None else None
    if flow.throttle is not None and first is not None:
        from offload.clock import from_ms

        start = throttle_start(tx, flow.throttle, to_ms(first.due_at))
        first.due_at = from_ms(start) or first.due_at


def cancel_run(store: SqlStore, tx: Tx, run_id: str, at: Any, error: dict[str, Any]
               ) -> tuple[Any, ...] | None:
    """Cancel an unfinished run inside ``tx``: drop its items and waits, free its slots."""
    return end_run(store, tx, run_id, RunStatus.CANCELLED, at, error)


def end_run(store: SqlStore, tx: Tx, run_id: str, status: RunStatus, at: Any,
            error: Any) -> tuple[Any, ...] | None:
    """End an unfinished run inside ``tx`` as ``status``: drop its items (callbacks stay)
    and waits, free its slots. The run's row, or None if it had ended already."""
    rows = tx.execute(
        f"UPDATE runs SET status = ?, ended_at = ?, updated_at = ?, error = ? "
        f"WHERE id = ? AND status NOT IN {TERMINAL_SQL} RETURNING {RUN_COLS}",
        (status.value, to_ms(at), to_ms(at), None if error is None else _dumps(error),
         run_id))
    if not rows:
        return None
    gone = tx.execute("DELETE FROM queue_items WHERE run_id = ? AND kind <> 'callback' "
                      "RETURNING concurrency_key, concurrency_key2, lease_owner, blocked",
                      (run_id,))
    tx.execute("DELETE FROM waits WHERE run_id = ?", (run_id,))
    unblock(store, tx, freed_keys((k, k2, owner is not None, blocked)
                                  for k, k2, owner, blocked in gone))
    return rows[0]

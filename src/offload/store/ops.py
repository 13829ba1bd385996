"""Operator state in the store: paused functions and queues, the audit log, alert rules.

:class:`OpsQueries` is mixed into :class:`~offload.store.sql.SqlStore`, so both
databases share these queries. Pausing works with the claim: :func:`hold_paused`
runs inside the claim's transaction and gives back the RUN items of a paused
function or queue with ``blocked = 2`` (out of the ready index, so a paused backlog
costs later claims nothing); resuming sets them back to ``0`` and the next claims
start them earliest due first, under their concurrency limits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from offload.clock import from_ms, to_ms

if TYPE_CHECKING:
    from offload.store.base import ChangeResult, NewRun, Page
    from offload.store.rows import Tx

T = TypeVar("T")

PAUSED = 2
"""``queue_items.blocked`` of an item held back because its function or queue is paused."""
PAUSE_KINDS = ("function", "queue")


@dataclass(frozen=True, slots=True)
class Pause:
    """A paused function or queue."""

    kind: str
    target: str
    paused_at: datetime
    paused_by: str | None = None


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A queue as operators see it: its items by state and whether it is paused."""

    name: str
    due: int = 0
    scheduled: int = 0
    leased: int = 0
    held: int = 0
    """Items held back by a pause (of this queue or of their function)."""
    oldest_due_at: datetime | None = None
    pause: Pause | None = None


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something: an API key, a dashboard user, the CLI, an app's SDK, the engine."""

    kind: str
    id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One operator action."""

    id: str
    at: datetime
    actor: Actor
    action: str
    target_kind: str | None = None
    target_id: str | None = None
    related_id: str | None = None
    """A second object the action made or touched (the new run of a replay)."""
    request_id: str | None = None
    outcome: str = "ok"
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Filters for :meth:`OpsQueries.audit_list`; None means no filter."""

    action: str | None = None
    actor: str | None = None
    """Matches the actor's id or name."""
    target_id: str | None = None
    """Matches the target or the related object (a run and the runs replayed from it)."""
    after: datetime | None = None
    before: datetime | None = None


@dataclass(frozen=True, slots=True)
class AlertRule:
    """A stored alert rule; ``spec`` holds the kind's fields (see ``engine/alerts.py``)."""

    id: str
    name: str
    kind: str
    spec: dict[str, Any]
    url: str
    enabled: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AlertState:
    """Where a rule stands: ``ok`` or ``firing`` since ``since``."""

    rule_id: str
    status: str
    since: datetime
    evaluated_at: datetime
    value: float | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One firing or resolving, and the run that delivers its notification."""

    id: str
    rule_id: str
    rule_name: str
    status: str
    message: str
    at: datetime
    value: float | None = None
    run_id: str | None = None


def _in(values: Sequence[Any]) -> str:
    return "(" + ", ".join("?" for _ in values) + ")"


def _dt(value: int) -> datetime:
    out = from_ms(value)
    assert out is not None
    return out


_AUDIT_COLS = ("id, at, actor_kind, actor_id, actor_name, action, target_kind, target_id, "
               "related_id, request_id, outcome, details")
_RULE_COLS = "id, name, kind, spec, url, enabled, created_at, updated_at"
_STATE_COLS = "rule_id, status, value, since, evaluated_at, message"
_EVENT_COLS = "id, rule_id, rule_name, status, value, message, run_id, at"


def _row_audit(r: Sequence[Any]) -> AuditEntry:
    from offload.store.rows import loads

    return AuditEntry(id=r[0], at=_dt(r[1]), actor=Actor(r[2], r[3], r[4]), action=r[5],
                      target_kind=r[6], target_id=r[7], related_id=r[8], request_id=r[9],
                      outcome=r[10], details=loads(r[11]) or {})


def _row_rule(r: Sequence[Any]) -> AlertRule:
    from offload.store.rows import loads

    return AlertRule(id=r[0], name=r[1], kind=r[2], spec=loads(r[3]) or {}, url=r[4],
                     enabled=bool(r[5]), created_at=_dt(r[6]), updated_at=_dt(r[7]))


def _row_state(r: Sequence[Any]) -> AlertState:
    return AlertState(rule_id=r[0], status=r[1], value=None if r[2] is None else float(r[2]),
                      since=_dt(r[3]), evaluated_at=_dt(r[4]), message=r[5])


def _row_event(r: Sequence[Any]) -> AlertEvent:
    return AlertEvent(id=r[0], rule_id=r[1], rule_name=r[2], status=r[3],
                      value=None if r[4] is None else float(r[4]), message=r[5], run_id=r[6],
                      at=_dt(r[7]))


def hold_paused(tx: Tx, rows: list[tuple[Any, ...]], lock_suffix: str = ""
                ) -> list[tuple[Any, ...]]:
    """Give back claimed RUN items of paused functions or queues; the rows left to start.

    ``rows`` are claimed rows starting with (id, kind, run_id, due_at, priority, queue).
    The pauses are read with ``lock_suffix`` (PostgreSQL: FOR SHARE), so a resume that
    is committing right now is waited for and never sees an item held after it.
    """
    runs = [r for r in rows if r[1] == "run"]
    if not runs:
        return rows
    pauses = tx.execute(f"SELECT kind, target FROM pauses{lock_suffix}")
    if not pauses:
        return rows
    queues = {t for k, t in pauses if k == "queue"}
    functions = sorted({t for k, t in pauses if k == "function"})
    held = {r[0] for r in runs if r[5] in queues}
    run_ids = sorted({r[2] for r in runs if r[0] not in held and r[2]})
    if functions and run_ids:
        found = {x[0] for x in tx.execute(
            f"SELECT id FROM runs WHERE id IN {_in(run_ids)} AND function_id IN "
            f"{_in(functions)}", (*run_ids, *functions))}
        held.update(r[0] for r in runs if r[2] in found)
    if not held:
        return rows
    ids = sorted(held)
    tx.execute("UPDATE queue_items SET lease_owner = NULL, lease_token = NULL, "
               f"lease_expires_at = NULL, blocked = {PAUSED} WHERE id IN {_in(ids)}", ids)
    return [r for r in rows if r[0] not in held]


@dataclass(frozen=True, slots=True)
class Respace:
    """A throttle to spread a resumed backlog by: ``burst`` at once, then one per
    ``interval_ms``; ``gcra_key`` is the throttle's state row to move past the backlog."""

    interval_ms: int
    burst: int = 1
    gcra_key: str | None = None


def _respace(tx: Tx, kind: str, target: str, now_ms: int, rule: Respace) -> None:
    """Spread the overdue held items of a target from ``now_ms`` (see ``pause_clear``)."""
    rows = tx.execute(f"SELECT id FROM queue_items WHERE blocked = {PAUSED} AND due_at <= ? "
                      f"AND {_target_items(kind)} ORDER BY due_at, id", (now_ms, target))
    if not rows:
        return
    interval = max(1, rule.interval_ms)
    burst = max(1, rule.burst)
    dues = [now_ms + max(0, i - burst + 1) * interval for i in range(len(rows))]
    tx.executemany("UPDATE queue_items SET due_at = ? WHERE id = ?",
                   [(due, r[0]) for due, r in zip(dues, rows, strict=True)])
    if rule.gcra_key is not None:
        tat = dues[-1] + interval
        tx.execute("INSERT INTO flow_gcra (key, tat) VALUES (?, ?) ON CONFLICT (key) DO "
                   "UPDATE SET tat = CASE WHEN flow_gcra.tat > excluded.tat THEN "
                   "flow_gcra.tat ELSE excluded.tat END", (rule.gcra_key, tat))


def _target_items(kind: str) -> str:
    """The WHERE condition selecting the RUN items of a function or queue (one parameter)."""
    if kind == "queue":
        return "kind = 'run' AND queue = ?"
    return "kind = 'run' AND run_id IN (SELECT id FROM runs WHERE function_id = ?)"


class OpsQueries:
    """Pause, audit and alert queries; mixed into SqlStore (which supplies the hooks)."""

    share_locked: str

    if TYPE_CHECKING:
        async def _write(self, fn: Callable[[Tx], T]) -> T: ...

        async def _read(self, fn: Callable[[Tx], T]) -> T: ...

        def _insert_run(self, tx: Tx, run: NewRun, result: ChangeResult) -> Any: ...

    # -- pauses ----------------------------------------------------------------------------

    async def pause_set(self, *, kind: str, target: str, at: datetime,
                        by: str | None = None) -> bool:
        """Pause a function or queue; False if it was paused already.

        Its queued RUN items are held at once; items queued later are held when a claim
        first meets them. Leased (in-flight) items finish.
        """
        def fn(tx: Tx) -> bool:
            tx.execute("INSERT INTO pauses (kind, target, paused_at, paused_by) "
                       "VALUES (?, ?, ?, ?) ON CONFLICT (kind, target) DO NOTHING",
                       (kind, target, to_ms(at), by))
            if tx.rowcount <= 0:
                return False
            tx.execute(f"UPDATE queue_items SET blocked = {PAUSED} WHERE lease_owner IS NULL "
                       f"AND blocked = 0 AND {_target_items(kind)}", (target,))
            return True
        return await self._write(fn)

    async def pause_clear(self, *, kind: str, target: str, now: datetime | None = None,
                          respace: Respace | None = None) -> bool:
        """Resume a function or queue; False if it was not paused.

        Its held items become claimable again, earliest due first (those still held by
        another pause are held again by the next claim that meets them). With
        ``respace`` (a throttle), the overdue backlog is spread out again from ``now``:
        ``burst`` at once, then one per ``interval_ms``, and the throttle's state moves
        past it, so a long pause does not end in a burst the throttle would not allow.
        """
        def fn(tx: Tx) -> bool:
            tx.execute("DELETE FROM pauses WHERE kind = ? AND target = ?", (kind, target))
            if tx.rowcount <= 0:
                return False
            if respace is not None and now is not None:
                _respace(tx, kind, target, to_ms(now), respace)
            tx.execute(f"UPDATE queue_items SET blocked = 0 WHERE blocked = {PAUSED} AND "
                       f"{_target_items(kind)}", (target,))
            tx.notify = True
            return True
        return await self._write(fn)

    async def pause_held_task_flow(self, *, kind: str, target: str) -> dict[str, Any] | None:
        """The flow-control fields of the earliest held HTTP task (its throttle, …)."""
        from offload.store.rows import loads

        condition = "q.queue = ?" if kind == "queue" else "r.function_id = ?"
        rows = await self._read(lambda tx: tx.execute(
            "SELECT r.input FROM queue_items q JOIN runs r ON r.id = q.run_id WHERE "
            f"q.blocked = {PAUSED} AND q.kind = 'run' AND r.function_id = 'http' AND "
            f"{condition} ORDER BY q.due_at LIMIT 1", (target,)))
        if not rows:
            return None
        task = loads(rows[0][0])
        flow = task.get("flow") if isinstance(task, dict) else None
        return flow if isinstance(flow, dict) else None

    async def pause_list(self) -> list[Pause]:
        """Every pause, by kind and target."""
        rows = await self._read(lambda tx: tx.execute(
            "SELECT kind, target, paused_at, paused_by FROM pauses ORDER BY kind, target"))
        return [Pause(r[0], r[1], _dt(r[2]), r[3]) for r in rows]

    async def pause_sweep(self) -> int:
        """Release held items no pause holds any more (a safety net); the number released."""
        def fn(tx: Tx) -> int:
            tx.execute(
                f"UPDATE queue_items SET blocked = 0 WHERE blocked = {PAUSED} AND NOT EXISTS "
                "(SELECT 1 FROM pauses p WHERE p.kind = 'queue' AND p.target = "
                "queue_items.queue) AND NOT EXISTS (SELECT 1 FROM pauses p JOIN runs r ON "
                "r.function_id = p.target WHERE p.kind = 'function' AND "
                "r.id = queue_items.run_id)")
            if tx.rowcount > 0:
                tx.notify = True
            return max(tx.rowcount, 0)
        return await self._write(fn)

    async def queue_list(self, *, now: datetime) -> list[QueueInfo]:
        """Every queue with items or a pause: counts by state, oldest due item, pause."""
        at = to_ms(now)

        def fn(tx: Tx) -> list[QueueInfo]:
            rows = tx.execute(
                "SELECT queue, "
                f"SUM(CASE WHEN lease_owner IS NULL AND blocked <> {PAUSED} AND due_at <= ? "
                "THEN 1 ELSE 0 END), "
                f"SUM(CASE WHEN lease_owner IS NULL AND blocked <> {PAUSED} AND due_at > ? "
                "THEN 1 ELSE 0 END), "
                "SUM(CASE WHEN lease_owner IS NOT NULL THEN 1 ELSE 0 END), "
                f"SUM(CASE WHEN blocked = {PAUSED} THEN 1 ELSE 0 END), "
                "MIN(CASE WHEN lease_owner IS NULL AND due_at <= ? THEN due_at END) "
                "FROM queue_items GROUP BY queue", (at, at, at))
            pauses = {r[1]: Pause(r[0], r[1], _dt(r[2]), r[3]) for r in tx.execute(
                "SELECT kind, target, paused_at, paused_by FROM pauses WHERE kind = 'queue'")}
            out = {r[0]: QueueInfo(name=r[0], due=int(r[1] or 0), scheduled=int(r[2] or 0),
                                   leased=int(r[3] or 0), held=int(r[4] or 0),
                                   oldest_due_at=from_ms(r[5]), pause=pauses.get(r[0]))
                   for r in rows}
            for name, pause in pauses.items():
                out.setdefault(name, QueueInfo(name=name, pause=pause))
            return [out[k] for k in sorted(out)]
        return await self._read(fn)

    # -- the audit log ---------------------------------------------------------------------

    async def audit_insert(self, entry: AuditEntry) -> None:
        """Record one operator action."""
        from offload.store.rows import dumps

        await self._write(lambda tx: tx.execute(
            f"INSERT INTO audit_log ({_AUDIT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (entry.id, to_ms(entry.at), entry.actor.kind, entry.actor.id, entry.actor.name,
             entry.action, entry.target_kind, entry.target_id, entry.related_id,
             entry.request_id, entry.outcome, dumps(entry.details) if entry.details else None)))

    async def audit_list(self, *, filter: AuditFilter, cursor: str | None, limit: int
                         ) -> Page[AuditEntry]:
        """Audit entries newest first."""
        from offload.store.base import Page

        where: list[str] = []
        params: list[Any] = []
        if filter.action is not None:
            where.append("action = ?")
            params.append(filter.action)
        if filter.actor is not None:
            where.append("(actor_id = ? OR actor_name = ?)")
            params.extend([filter.actor, filter.actor])
        if filter.target_id is not None:
            where.append("(target_id = ? OR related_id = ?)")
            params.extend([filter.target_id, filter.target_id])
        if filter.after is not None:
            where.append("at >= ?")
            params.append(to_ms(filter.after))
        if filter.before is not None:
            where.append("at < ?")
            params.append(to_ms(filter.before))
        if cursor is not None:
            where.append("id < ?")
            params.append(cursor)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._read(lambda tx: tx.execute(
            f"SELECT {_AUDIT_COLS} FROM audit_log {clause} ORDER BY id DESC LIMIT ?",
            (*params, limit + 1)))
        entries = [_row_audit(r) for r in rows[:limit]]
        return Page(entries, entries[-1].id if len(rows) > limit else None)

    async def audit_prune(self, *, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` entries older than ``before``; the number deleted."""
        def fn(tx: Tx) -> int:
            tx.execute("DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log "
                       "WHERE at < ? LIMIT ?)", (to_ms(before), limit))
            return max(tx.rowcount, 0)
        return await self._write(fn)

    # -- alerts ----------------------------------------------------------------------------

    async def alert_rule_put(self, rule: AlertRule, *, create: bool) -> bool:
        """Insert (``create``) or replace a rule; False on a name clash or a missing rule."""
        from offload.store.rows import dumps

        def fn(tx: Tx) -> bool:
            clash = tx.execute("SELECT id FROM alert_rules WHERE name = ? AND id <> ?",
                               (rule.name, rule.id))
            if clash:
                return False
            values = (rule.name, rule.kind, dumps(rule.spec), rule.url, int(rule.enabled),
                      to_ms(rule.updated_at))
            if create:
                tx.execute(f"INSERT INTO alert_rules ({_RULE_COLS}) VALUES "
                           "(?, ?, ?, ?, ?, ?, ?, ?)",
                           (rule.id, *values[:5], to_ms(rule.created_at), values[5]))
                return True
            tx.execute("UPDATE alert_rules SET name = ?, kind = ?, spec = ?, url = ?, "
                       "enabled = ?, updated_at = ? WHERE id = ?", (*values, rule.id))
            return tx.rowcount > 0
        return await self._write(fn)

    async def alert_rule_delete(self, *, rule_id: str) -> bool:
        """Delete a rule and its state; False if there is no such rule."""
        def fn(tx: Tx) -> bool:
            tx.execute("DELETE FROM alert_rules WHERE id = ?", (rule_id,))
            gone = tx.rowcount > 0
            tx.execute("DELETE FROM alert_states WHERE rule_id = ?", (rule_id,))
            return gone
        return await self._write(fn)

    async def alert_rule_get(self, *, rule_id: str) -> AlertRule | None:
        """One stored rule."""
        rows = await self._read(lambda tx: tx.execute(
            f"SELECT {_RULE_COLS} FROM alert_rules WHERE id = ?", (rule_id,)))
        return _row_rule(rows[0]) if rows else None

    async def alert_rule_list(self) -> list[AlertRule]:
        """Every stored rule, by name."""
        rows = await self._read(lambda tx: tx.execute(
            f"SELECT {_RULE_COLS} FROM alert_rules ORDER BY name"))
        return [_row_rule(r) for r in rows]

    async def alert_state_list(self) -> list[AlertState]:
        """The state of every rule evaluated so far."""
        rows = await self._read(lambda tx: tx.execute(
            f"SELECT {_STATE_COLS} FROM alert_states"))
        return [_row_state(r) for r in rows]

    async def alert_transition(self, *, rule_id: str, rule_name: str, status: str,
                               value: float | None, message: str, at: datetime,
                               notify: NewRun | None) -> AlertEvent | None:
        """Move a rule to ``status`` (``ok`` or ``firing``) unless it is there already, and
        queue its notification run.

        A compare-and-set on the stored status: when several engines evaluate the same
        rule at once, one of them records the firing (and queues its notification) and
        the others write nothing. A rule never evaluated starts ``ok``. Returns the event
        recorded, or None if the rule was already in ``status`` (then only the value and
        evaluation time are refreshed).
        """
        from offload.ids import new_id
        from offload.store.base import ChangeResult

        def fn(tx: Tx) -> AlertEvent | None:
            ms = to_ms(at)
            tx.execute(f"INSERT INTO alert_states ({_STATE_COLS}) VALUES (?, 'ok', NULL, ?, ?, "
                       "NULL) ON CONFLICT (rule_id) DO NOTHING", (rule_id, ms, ms))
            tx.execute("UPDATE alert_states SET status = ?, value = ?, since = ?, "
                       "evaluated_at = ?, message = ? WHERE rule_id = ? AND status <> ?",
                       (status, value, ms, ms, message, rule_id, status))
            if tx.rowcount <= 0:
                tx.execute("UPDATE alert_states SET value = ?, evaluated_at = ? "
                           "WHERE rule_id = ?", (value, ms, rule_id))
                return None
            # A rule seen for the first time starts ``ok``, so reaching here means it
            # fired (ok -> firing) or resolved (firing -> ok).
            run_id = None
            if notify is not None:
                self._insert_run(tx, notify, ChangeResult())
                run_id = notify.id
            event = AlertEvent(id=new_id(), rule_id=rule_id, rule_name=rule_name,
                               status="firing" if status == "firing" else "resolved",
                               message=message, at=at, value=value, run_id=run_id)
            tx.execute(f"INSERT INTO alert_events ({_EVENT_COLS}) VALUES "
                       "(?, ?, ?, ?, ?, ?, ?, ?)",
                       (event.id, rule_id, rule_name, event.status, value, message, run_id,
                        ms))
            return event
        return await self._write(fn)

    async def alert_event_list(self, *, rule_id: str | None = None,
                               limit: int = 100) -> list[AlertEvent]:
        """Recent firings and resolvings, newest first."""
        sql = f"SELECT {_EVENT_COLS} FROM alert_events ORDER BY id DESC LIMIT ?"
        params: tuple[Any, ...] = (limit,)
        if rule_id is not None:
            sql = (f"SELECT {_EVENT_COLS} FROM alert_events WHERE rule_id = ? "
                   "ORDER BY id DESC LIMIT ?")
            params = (rule_id, limit)
        rows = await self._read(lambda tx: tx.execute(sql, params))
        return [_row_event(r) for r in rows]

    async def alert_run_counts(self, *, since: datetime, function_id: str | None = None,
                               queue: str | None = None) -> dict[str, int]:
        """Runs ended at or after ``since`` per status (of one function or queue)."""
        where = ["ended_at IS NOT NULL", "ended_at >= ?"]
        params: list[Any] = [to_ms(since)]
        if function_id is not None:
            where.append("function_id = ?")
            params.append(function_id)
        if queue is not None:
            where.append("queue = ?")
            params.append(queue)
        rows = await self._read(lambda tx: tx.execute(
            f"SELECT status, COUNT(*) FROM runs WHERE {' AND '.join(where)} GROUP BY status",
            params))
        return {r[0]: int(r[1]) for r in rows}

    async def alert_oldest_due(self, *, now: datetime, function_id: str | None = None,
                               queue: str | None = None) -> datetime | None:
        """Due time of the oldest unleased due RUN item not held by a pause."""
        where = ["q.lease_owner IS NULL", f"q.blocked <> {PAUSED}", "q.due_at <= ?",
                 "q.kind = 'run'"]
        params: list[Any] = [to_ms(now)]
        join = ""
        if function_id is not None:
            join = " JOIN runs r ON r.id = q.run_id"
            where.append("r.function_id = ?")
            params.append(function_id)
        if queue is not None:
            where.append("q.queue = ?")
            params.append(queue)
        rows = await self._read(lambda tx: tx.execute(
            f"SELECT q.due_at FROM queue_items q{join} WHERE {' AND '.join(where)} "
            "ORDER BY q.due_at LIMIT 1", params))
        return from_ms(rows[0][0]) if rows else None

"""The one write path: :meth:`WritePath.apply` commits a whole ``Change`` in one
transaction, fenced by a queue item's lease when it carries one."""

from __future__ import annotations

from typing import Any, TypeVar

from offload import faults
from offload.clock import now_ms, to_ms
from offload.errors import LeaseLostError, StaleRunError
from offload.ids import new_id
from offload.models import Event, ItemKind, Run
from offload.store import admission
from offload.store.base import (
    UNSET,
    WAKE_WITHIN_MS,
    Change,
    ChangeResult,
    Fence,
    NewEvent,
    NewItem,
    NewRun,
    NewWait,
    RunPatch,
    StepWrite,
)
from offload.store.rows import (
    BULK_COLS,
    EVENT_COLS,
    RUN_COLS,
    STEP_COLS,
    TERMINAL_SQL,
    WAIT_COLS,
    Tx,
    _in,
    _ms,
    dumps,
    row_event,
    row_run,
)
from offload.store.sql.dialect import Dialect

T = TypeVar("T")


_RUN_INSERT = (
    f"INSERT INTO runs ({RUN_COLS}, concurrency) VALUES "
    "(?, ?, ?, ?, 0, ?, ?, NULL, NULL, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?)"
)
_ITEM_INSERT = (
    "INSERT INTO queue_items (id, kind, run_id, due_at, priority, queue, "
    "concurrency_key, payload, created_at, concurrency_limit, concurrency_key2, "
    "concurrency_limit2) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _run_params(run: NewRun) -> tuple[Any, ...]:
    """The parameters of ``_RUN_INSERT`` for ``run``."""
    created = to_ms(run.created_at)
    limits = run.flow.concurrency if run.flow is not None else []
    return (run.id, run.app_id, run.function_id, run.status.value,
            dumps(run.event_ids) if run.event_ids else "[]", dumps(run.input), run.queue,
            run.correlation_id, run.replay_of,
            run.idempotency.key if run.idempotency else None,
            dumps(run.state) if run.state else "{}", created,
            created, run.name, dumps([[c.key, c.limit] for c in limits]) if limits else None)


def _item_params(item: NewItem, item_id: str) -> tuple[Any, ...]:
    """The parameters of ``_ITEM_INSERT`` for ``item``, stored as ``item_id``."""
    due = to_ms(item.due_at)
    return (item_id, item.kind.value, item.run_id, due, item.priority,
            item.queue, item.concurrency_key, dumps(item.payload) if item.payload else "{}",
            due, item.concurrency_limit, item.concurrency_key2, item.concurrency_limit2)


def _stored_run(run: NewRun) -> Run:
    """The Run that inserting ``run`` stores."""
    return Run(
        id=run.id, function_id=run.function_id, status=run.status, attempt=0,
        created_at=run.created_at, updated_at=run.created_at, app_id=run.app_id,
        event_ids=list(run.event_ids), input=run.input, queue=run.queue,
        correlation_id=run.correlation_id, replay_of=run.replay_of,
        idempotency_key=run.idempotency.key if run.idempotency else None,
        state=dict(run.state), name=run.name,
    )


def is_plain(run: NewRun) -> bool:
    """True when inserting ``run`` reads nothing first: no flow control beyond concurrency,
    no idempotency key, no trigger events."""
    return admission.only_concurrency(run) and run.idempotency is None and not run.event_ids


def plain_rows(run: NewRun, run_rows: list[tuple[Any, ...]], item_rows: list[tuple[Any, ...]],
               result: ChangeResult, wake_before: int) -> bool:
    """Add a plain run's ``_RUN_INSERT`` and ``_ITEM_INSERT`` rows and its result entry;
    whether one of its items is due before ``wake_before`` (the schedulers need a wake-up)."""
    run_rows.append(_run_params(run))
    wake = False
    for item in run.items:
        item.run_id = run.id
        if run.flow is not None:
            admission.set_item_concurrency(item, run.flow.concurrency)
        row = _item_params(item, item.id or new_id())
        item_rows.append(row)
        if row[3] <= wake_before:  # due_at in ms
            wake = True
    result.enqueued += len(run.items)
    result.outcomes.append("created")
    result.runs.append((_stored_run(run), True))
    return wake


class WritePath(Dialect):
    """``apply`` and the row writers it is made of."""

    # -- the one write path --------------------------------------------------------------

    async def apply(self, change: Change) -> ChangeResult:
        """Commit a change atomically; raise LeaseLostError if its fence no longer holds."""
        return await self._write(lambda tx: self._apply(tx, change))

    def _apply(self, tx: Tx, change: Change) -> ChangeResult:
        result = ChangeResult()
        if change.fence is not None:
            self._check_fence(tx, change.fence, delete=not change.keep_fenced_item)
        # The tick goes first: a tick another engine already fired writes nothing at all.
        if change.cron_tick is not None:
            function_id, tick = change.cron_tick
            run_id = change.runs[0].id if change.runs else ""
            tx.execute("INSERT INTO cron_ticks (function_id, tick_at, run_id) VALUES (?, ?, ?) "
                       "ON CONFLICT (function_id, tick_at) DO NOTHING",
                       (function_id, to_ms(tick), run_id))
            if tx.rowcount == 0:
                result.cron_fired = False
                return result
        for event in change.events:
            self._insert_event(tx, event, result)
        self._insert_runs(tx, change.runs, result)
        for patch in change.run_patches:
            self._patch_run(tx, patch)
        for step in change.steps:
            self._write_step(tx, step)
        if change.steps:
            faults.crash_point("write.uncommitted")  # tests only: die before the commit
        for item in change.items:
            self._insert_item(tx, item, result)
        if change.delete_waits_of_runs:
            ids = change.delete_waits_of_runs
            tx.execute(f"DELETE FROM waits WHERE run_id IN {_in(ids)}", ids)
        for wait in change.waits:
            tx.execute(WAIT_INSERT, wait_params(wait))
        for job in change.bulk_jobs:
            tx.execute(
                f"INSERT INTO bulk_jobs ({BULK_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job.id, job.action, dumps(job.filter), job.status, job.total, job.done,
                 job.skipped, job.error, to_ms(job.created_at), to_ms(job.updated_at),
                 _ms(job.finished_at)))
        for progress in change.bulk_progress:
            at = to_ms(progress.at) if progress.at else now_ms()
            tx.execute(
                "UPDATE bulk_jobs SET done = done + ?, skipped = skipped + ?, "
                "status = COALESCE(?, status), error = COALESCE(?, error), updated_at = ?, "
                "finished_at = COALESCE(?, finished_at) WHERE id = ? AND status = 'running'",
                (progress.done, progress.skipped, progress.status, progress.error, at,
                 at if progress.status else None, progress.job_id))
        for resume in change.resumes:
            tx.execute("DELETE FROM waits WHERE id = ?", (resume.wait_id,))
            if tx.rowcount == 0:
                continue
            self._write_step(tx, resume.step)
            self._insert_item(tx, resume.item, result)
            result.resumed.append(resume.wait_id)
        for end in change.ends:
            row = admission.end_run(self, tx, end.run_id, end.status, end.at, end.error)
            if row is None:
                continue  # it had ended already: its events were written by its ender
            result.ended.append(row_run(row))
            for event in end.events:
                self._insert_event(tx, event, result)
        return result

    def _insert_event(self, tx: Tx, event: NewEvent, result: ChangeResult) -> None:
        # ON CONFLICT rather than select-then-insert: two engines accepting the same
        # external id at once must dedupe, not fail one request on the unique index.
        tx.execute(EVENT_INSERT, event_params(event))
        if tx.rowcount == 0:
            rows = tx.execute(f"SELECT {EVENT_COLS} FROM events WHERE external_id = ?",
                              (event.external_id,))
            result.events.append((row_event(rows[0]), False))
            return
        result.events.append((stored_event(event), True))
        if event.fanout and event.fanout_if_waited:
            # Only a wait can hear it: one conditional insert, no fan-out of its own.
            tx.execute(WAITED_ITEM_INSERT, waited_item_params(event))
            if tx.rowcount > 0:
                tx.notify = True
                result.enqueued += 1
        elif event.fanout:
            self._insert_item(tx, NewItem(kind=ItemKind.EVENT, due_at=event.received_at,
                                          payload={"event_id": event.id}), result)

    def _check_fence(self, tx: Tx, fence: Fence, *, delete: bool) -> None:
        if delete:
            gone = tx.execute("DELETE FROM queue_items WHERE id = ? AND lease_token = ? "
                              "RETURNING concurrency_key, concurrency_key2",
                              (fence.item_id, fence.lease_token))
            held = bool(gone)
            if gone and (gone[0][0] is not None or gone[0][1] is not None):
                admission.unblock(self, tx, gone[0])
        else:
            # A no-op UPDATE, not a SELECT: it locks the row until commit (PostgreSQL), so a
            # concurrent rescue cannot move the lease between this check and the commit.
            tx.execute("UPDATE queue_items SET lease_token = lease_token "
                       "WHERE id = ? AND lease_token = ?", (fence.item_id, fence.lease_token))
            held = tx.rowcount > 0
        if not held:
            raise LeaseLostError(f"lease on queue item {fence.item_id} is no longer held")

    def _insert_item(self, tx: Tx, item: NewItem, result: ChangeResult, *,
                     inherit: bool = True) -> None:
        if inherit:
            admission.inherit_concurrency(tx, item)
        tx.execute(_ITEM_INSERT, _item_params(item, item.id or new_id()))
        if to_ms(item.due_at) <= now_ms() + WAKE_WITHIN_MS:
            # Later work needs no wake-up: schedulers re-read the next due time at
            # least every WAKE_WITHIN_MS (scheduler.IDLE_POLL_S).
            tx.notify = True
        result.enqueued += 1

    def _insert_runs(self, tx: Tx, runs: list[NewRun], result: ChangeResult) -> None:
        """Insert runs, results in order. Plain runs of a batch (no flow control beyond
        concurrency, no idempotency key or events) go in with one executemany per table."""
        if len(runs) <= 1:
            for run in runs:
                result.runs.append(self._insert_run(tx, run, result))
            return
        run_rows: list[tuple[Any, ...]] = []
        item_rows: list[tuple[Any, ...]] = []
        wake_before = now_ms() + WAKE_WITHIN_MS
        for run in runs:
            if not is_plain(run):
                result.runs.append(self._insert_run(tx, run, result))
                continue
            if plain_rows(run, run_rows, item_rows, result, wake_before):
                tx.notify = True
        if run_rows:
            tx.executemany(_RUN_INSERT, run_rows)
        if item_rows:
            tx.executemany(_ITEM_INSERT, item_rows)

    def _insert_run(self, tx: Tx, run: NewRun, result: ChangeResult) -> tuple[Run, bool]:
        if run.idempotency is not None:
            idem = run.idempotency
            now = to_ms(run.created_at)
            rows = tx.execute(
                "INSERT INTO idempotency_keys (scope, key, run_id, expires_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (scope, key) DO UPDATE SET "
                "run_id = excluded.run_id, expires_at = excluded.expires_at "
                "WHERE idempotency_keys.expires_at <= ? RETURNING run_id",
                (idem.scope, idem.key, run.id, to_ms(idem.expires_at), now))
            if not rows:
                existing = tx.execute(
                    f"SELECT {RUN_COLS} FROM runs WHERE id = (SELECT run_id FROM "
                    "idempotency_keys WHERE scope = ? AND key = ?)", (idem.scope, idem.key))
                if existing:
                    result.outcomes.append("duplicate")
                    return row_run(existing[0]), False
        decided = admission.admit(self, tx, run, result)
        if decided is not None:
            result.outcomes.append(decided[1])
            return decided[0]
        admission.prepare_items(tx, run)
        stored = self._insert_run_row(tx, run)
        for item in run.items:
            item.run_id = run.id
            self._insert_item(tx, item, result, inherit=False)
        result.outcomes.append("created")
        return stored

    def _insert_run_row(self, tx: Tx, run: NewRun) -> tuple[Run, bool]:
        tx.execute(_RUN_INSERT, _run_params(run))
        for event_id in run.event_ids:
            tx.execute("INSERT INTO run_events (event_id, run_id) VALUES (?, ?) "
                       "ON CONFLICT DO NOTHING", (event_id, run.id))
        return _stored_run(run), True

    def _patch_run(self, tx: Tx, patch: RunPatch) -> None:
        sql, params = patch_sql(patch)
        tx.execute(sql, params)
        if patch.expect_state is not UNSET and tx.rowcount == 0:
            raise StaleRunError(f"run {patch.run_id} changed meanwhile (or has ended)")

    def _write_step(self, tx: Tx, step: StepWrite) -> None:
        tx.execute(*step_sql(step))


def patch_sql(patch: RunPatch) -> tuple[str, tuple[Any, ...]]:
    """The UPDATE of a run patch (guarded by ``expect_state`` when it has one)."""
    sets: list[str] = []
    params: list[Any] = []
    if patch.status is not None:
        sets.append("status = ?")
        params.append(patch.status.value)
    if patch.attempt is not None:
        sets.append("attempt = ?")
        params.append(patch.attempt)
    for column, value in (("output", patch.output), ("error", patch.error),
                          ("state", patch.state)):
        if value is not UNSET:
            sets.append(f"{column} = ?")
            params.append(dumps(value) if value is not None else None)
    if patch.started_at is not None:
        sets.append("started_at = COALESCE(started_at, ?)")
        params.append(to_ms(patch.started_at))
    if patch.ended_at is not None:
        sets.append("ended_at = ?")
        params.append(to_ms(patch.ended_at))

    sets.append("updated_at = ?")
    params.append(now_ms())
    guard, guard_params = "", []
    if patch.expect_state is not UNSET:
        guard, guard_params = " AND state = ?", [dumps(patch.expect_state or {})]
    return (f"UPDATE runs SET {', '.join(sets)} WHERE id = ? AND status NOT IN "
            f"{TERMINAL_SQL}{guard}", (*params, patch.run_id, *guard_params))


def _value(v: Any) -> Any:
    return None if v is UNSET or v is None else dumps(v)


def step_sql(step: StepWrite) -> tuple[str, tuple[Any, ...]]:
    """The upsert of a step (a completed or failed step is never overwritten)."""
    updates = ["name = excluded.name", "kind = excluded.kind", "status = excluded.status",
               "attempts = excluded.attempts",
               "started_at = COALESCE(steps.started_at, excluded.started_at)",
               "ended_at = excluded.ended_at"]
    for column, v in (("input", step.input), ("output", step.output),
                      ("error", step.error), ("history", step.history)):
        if v is not UNSET:
            updates.append(f"{column} = excluded.{column}")
    return (
        f"INSERT INTO steps ({STEP_COLS}) VALUES (?, ?, ?, ?, ?, ?, "
        "(SELECT COALESCE(MAX(position) + 1, 0) FROM steps WHERE run_id = ?), "
        "?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, id) DO UPDATE SET "
        f"{', '.join(updates)} WHERE steps.status NOT IN ('completed', 'failed')",
        (step.run_id, step.id, step.name, step.kind.value, step.status.value, step.attempts,
         step.run_id, _value(step.input), _value(step.output), _value(step.error),
         _ms(step.started_at), _ms(step.ended_at), _value(step.history)))


EVENT_INSERT = (f"INSERT INTO events ({EVENT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (external_id) DO NOTHING")
WAITED_ITEM_INSERT = (
    "INSERT INTO queue_items (id, kind, run_id, due_at, priority, queue, payload, created_at) "
    "SELECT ?, 'event', NULL, ?, 0, 'default', ?, ? "
    "WHERE EXISTS (SELECT 1 FROM waits WHERE event_name = ?)")


def event_params(event: NewEvent) -> tuple[Any, ...]:
    """The parameters of ``EVENT_INSERT``."""
    return (event.id, event.name, dumps(event.data), event.ts, to_ms(event.received_at),
            None if event.user is None else dumps(event.user), event.external_id,
            event.correlation_id, event.traceparent,
            dumps(event.extra) if event.extra else None)


def waited_item_params(event: NewEvent) -> tuple[Any, ...]:
    """The parameters of ``WAITED_ITEM_INSERT``: the fan-out item of ``event``."""
    due = to_ms(event.received_at)
    return (new_id(), due, dumps({"event_id": event.id}), due, event.name)


def stored_event(event: NewEvent) -> Event:
    """The Event that inserting ``event`` stores."""
    return Event(id=event.id, name=event.name, data=event.data, ts=event.ts,
                 received_at=event.received_at, user=event.user,
                 external_id=event.external_id, correlation_id=event.correlation_id,
                 traceparent=event.traceparent, extra=event.extra)


def wait_params(wait: NewWait) -> tuple[Any, ...]:
    """The parameters of ``WAIT_INSERT``."""
    return (wait.id, wait.run_id, wait.step_id, wait.event_name, wait.expression,
            wait.correlation_id, None if wait.trigger is None else dumps(wait.trigger),
            _ms(wait.expires_at), to_ms(wait.created_at))


WAIT_INSERT = f"INSERT INTO waits ({WAIT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"

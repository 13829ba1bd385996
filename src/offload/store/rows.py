"""Rows and SQL pieces shared by the SQL store's modules: column lists, the ``Tx``
interface, JSON columns, row → model conversions and the run filter.

Imported by :mod:`offload.store.sql` and the modules it is built from
(:mod:`offload.store.admission`, ...), so none of them needs to import ``sql``.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import orjson

from offload.clock import from_ms, to_ms
from offload.models import (
    ApiKey,
    App,
    Event,
    Function,
    ItemKind,
    QueueItem,
    Run,
    RunStatus,
    Step,
    StepKind,
    StepStatus,
    Wait,
)
from offload.protocol.function_config import FunctionConfig, load_function_config
from offload.store.base import RunFilter

_T = TypeVar("_T")

RUN_COLS = (
    "id, app_id, function_id, status, attempt, event_ids, input, output, error, queue, "
    "correlation_id, replay_of, idempotency_key, state, created_at, started_at, ended_at, "
    "updated_at, name"
)
STEP_COLS = (
    "run_id, id, name, kind, status, attempts, position, input, output, error, started_at, "
    "ended_at, history"
)
ITEM_COLS = (
    "id, kind, run_id, due_at, priority, queue, payload, lease_token, lease_expires_at, "
    "expiries, concurrency_key"
)
EVENT_COLS = ("id, name, data, ts, received_at, user_data, external_id, correlation_id, "
              "traceparent, extra")
APP_COLS = (
    "id, url, sdk, framework, app_version, checksum, sync_error, synced_at, created_at, "
    "updated_at"
)
FUNCTION_COLS = "id, app_id, name, config, created_at, updated_at"
WAIT_COLS = (
    "id, run_id, step_id, event_name, expression, correlation_id, trigger, expires_at, "
    "created_at"
)
KEY_COLS = "id, name, scope, created_at, last_used_at, revoked_at"
BULK_COLS = (
    "id, action, filter, status, total, done, skipped, error, created_at, updated_at, "
    "finished_at"
)
TERMINAL_SQL = "('completed', 'failed', 'cancelled')"


class Tx(abc.ABC):
    """One transaction (or read connection) as the store's functions see it."""

    notify: bool = False
    """Set when the transaction queued work, so listeners are woken after commit."""

    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement with ``?`` placeholders; the rows it returned."""

    @property
    @abc.abstractmethod
    def rowcount(self) -> int:
        """Rows changed by the last statement."""

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement that returns no rows once per parameter row."""
        for params in rows:
            self.execute(sql, params)


def dumps(value: Any) -> str:
    """JSON text for a column."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def loads(text: str | None) -> Any:
    """A JSON column's value (NULL is None)."""
    return None if text is None else orjson.loads(text)


def _ms(value: datetime | None) -> int | None:
    return None if value is None else to_ms(value)


def _in(values: Sequence[Any]) -> str:
    return "(" + ", ".join("?" for _ in values) + ")"


def _run_where(filter: RunFilter, cursor: str | None) -> tuple[str, list[Any]]:
    """The WHERE clause (and its parameters) selecting the runs of ``filter``."""
    where: list[str] = []
    params: list[Any] = []
    if filter.statuses:
        where.append(f"status IN {_in(filter.statuses)}")
        params.extend(s.value for s in filter.statuses)
    for column, value in (("function_id", filter.function_id), ("queue", filter.queue)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if filter.event_id is not None:
        where.append("id IN (SELECT run_id FROM run_events WHERE event_id = ?)")
        params.append(filter.event_id)
    if filter.created_after is not None:
        where.append("created_at >= ?")
        params.append(to_ms(filter.created_after))
    if filter.created_before is not None:
        where.append("created_at < ?")
        params.append(to_ms(filter.created_before))
    if filter.search:
        where.append("(id = ? OR correlation_id = ? OR LOWER(error) LIKE LOWER(?))")
        params.extend([filter.search, filter.search, f"%{filter.search}%"])
    if filter.name is not None:
        where.append("name = ?")
        params.append(filter.name)
    if filter.unreplayed:
        where.append("NOT EXISTS (SELECT 1 FROM runs r2 WHERE r2.replay_of = runs.id)")
    if filter.event_name is not None:
        where.append("id IN (SELECT run_events.run_id FROM run_events JOIN events ON "
                     "events.id = run_events.event_id WHERE events.name = ?)")
        params.append(filter.event_name)
    if filter.correlation_id is not None:
        where.append("correlation_id = ?")
        params.append(filter.correlation_id)
    if cursor is not None:
        where.append("id < ?")
        params.append(cursor)
    return (f"WHERE {' AND '.join(where)}" if where else ""), params


def row_run(r: tuple[Any, ...]) -> Run:
    """A ``runs`` row as a Run."""
    return Run(
        id=r[0], app_id=r[1], function_id=r[2], status=RunStatus(r[3]), attempt=r[4],
        event_ids=loads(r[5]) or [], input=loads(r[6]), output=loads(r[7]), error=loads(r[8]),
        queue=r[9], correlation_id=r[10], replay_of=r[11], idempotency_key=r[12],
        state=loads(r[13]) or {}, created_at=_dt(r[14]), started_at=from_ms(r[15]),
        ended_at=from_ms(r[16]), updated_at=_dt(r[17]), name=r[18],
    )


def row_step(r: tuple[Any, ...]) -> Step:
    """A ``steps`` row as a Step."""
    return Step(
        run_id=r[0], id=r[1], name=r[2], kind=StepKind(r[3]), status=StepStatus(r[4]),
        attempts=r[5], position=r[6], input=loads(r[7]), output=loads(r[8]), error=loads(r[9]),
        started_at=from_ms(r[10]), ended_at=from_ms(r[11]), history=loads(r[12]) or [],
    )


def row_item(r: tuple[Any, ...]) -> QueueItem:
    """A ``queue_items`` row as a QueueItem."""
    return QueueItem(
        id=r[0], kind=ItemKind(r[1]), run_id=r[2], due_at=_dt(r[3]), priority=r[4], queue=r[5],
        payload=loads(r[6]) or {}, lease_token=r[7], lease_expires_at=from_ms(r[8]),
        expiries=r[9], concurrency_key=r[10],
    )


def row_event(r: tuple[Any, ...]) -> Event:
    """An ``events`` row as an Event."""
    return Event(id=r[0], name=r[1], data=loads(r[2]), ts=r[3], received_at=_dt(r[4]),
                 user=loads(r[5]), external_id=r[6], correlation_id=r[7], traceparent=r[8],
                 extra=loads(r[9]))


def row_app(r: tuple[Any, ...]) -> App:
    """An ``apps`` row as an App."""
    return App(id=r[0], url=r[1], sdk=r[2], framework=r[3], app_version=r[4], checksum=r[5],
               sync_error=r[6], synced_at=from_ms(r[7]), created_at=_dt(r[8]),
               updated_at=_dt(r[9]))


@functools.lru_cache(maxsize=4096)
def function_spec(config_text: str) -> FunctionConfig:
    """A stored function config, parsed once per distinct config text (a config version):
    every later read of the row gets the same object."""
    return load_function_config(orjson.loads(config_text))


def row_function(r: tuple[Any, ...]) -> Function:
    """A ``functions`` row as a Function, its parsed config shared by every read."""
    return Function(id=r[0], app_id=r[1], name=r[2], config=loads(r[3]),
                    spec=function_spec(r[3]), created_at=_dt(r[4]),
                    updated_at=_dt(r[5]))


def row_wait(r: tuple[Any, ...]) -> Wait:
    """A ``waits`` row as a Wait."""
    return Wait(id=r[0], run_id=r[1], step_id=r[2], event_name=r[3], expression=r[4],
                correlation_id=r[5], trigger=loads(r[6]), expires_at=from_ms(r[7]),
                created_at=_dt(r[8]))


def row_key(r: tuple[Any, ...]) -> ApiKey:
    """An ``api_keys`` row as an ApiKey."""
    return ApiKey(id=r[0], name=r[1], scope=r[2], created_at=_dt(r[3]),
                  last_used_at=from_ms(r[4]), revoked_at=from_ms(r[5]))


def _dt(value: int) -> datetime:
    out = from_ms(value)
    assert out is not None
    return out


def chunks(values: Iterable[_T], size: int) -> Iterable[list[_T]]:
    """Split ``values`` into lists of at most ``size``."""
    batch: list[_T] = []
    for v in values:
        batch.append(v)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch

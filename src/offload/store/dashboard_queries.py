"""Reads the dashboard needs beyond the core Store: replays of runs, capped counts; and
:func:`record_restarts`, which notes on a run each time its work was taken over from an
engine that died (or stopped renewing its lease).

A mixin of :class:`offload.store.sql.SqlStore`; the SQL is the same on both databases.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from offload.store.base import RunFilter
from offload.store.rows import TERMINAL_SQL, _in, dumps, loads

MAX_RESTARTS_KEPT = 50
"""Entries of ``state.restarts`` kept per run (the newest)."""

T = TypeVar("T")


class DashboardQueries:
    """``run_replays`` and ``run_count_upto`` over the backend's ``_read``."""

    async def _read(self, fn: Callable[[Any], T]) -> T:  # supplied by SqlStore
        raise NotImplementedError

    async def run_replays(self, *, run_ids: Sequence[str]) -> dict[str, str]:
        """For each of ``run_ids`` that was replayed: the id of its newest replay."""
        ids = list(dict.fromkeys(run_ids))
        if not ids:
            return {}

        def fn(tx: Any) -> dict[str, str]:
            out: dict[str, str] = {}
            for start in range(0, len(ids), 500):
                part = ids[start:start + 500]
                marks = ", ".join("?" for _ in part)
                for original, replay in tx.execute(
                        f"SELECT replay_of, MAX(id) FROM runs WHERE replay_of IN ({marks}) "
                        "GROUP BY replay_of", part):
                    out[str(original)] = str(replay)
            return out
        return await self._read(fn)

    async def run_count_upto(self, *, filter: RunFilter, limit: int) -> int:
        """The runs ``filter`` selects, counted up to ``limit`` (cheap on large tables)."""
        from offload.store.rows import _run_where

        clause, params = _run_where(filter, None)

        def fn(tx: Any) -> int:
            rows = tx.execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM runs {clause} LIMIT ?) c",
                              [*params, limit])
            return int(rows[0][0])
        return await self._read(fn)


def record_restarts(tx: Any, run_ids: Sequence[str | None], at: datetime) -> None:
    """Append ``{"at"}`` to ``state.restarts`` of each live run in ``run_ids``.

    Called in the transaction that rescues expired leases: the engine holding the run's
    work died or stopped renewing, and another engine takes it over. The run page and
    ``GET /v1/runs/{id}`` (``restarts``) show them.
    """
    ids = sorted({r for r in run_ids if r})
    if not ids:
        return
    rows = tx.execute(f"SELECT id, state FROM runs WHERE id IN {_in(ids)} "
                      f"AND status NOT IN {TERMINAL_SQL}", ids)
    for run_id, state_text in rows:
        state = loads(state_text) or {}
        restarts = [r for r in state.get("restarts") or [] if isinstance(r, dict)]
        restarts.append({"at": at.isoformat()})
        state["restarts"] = restarts[-MAX_RESTARTS_KEPT:]
        tx.execute("UPDATE runs SET state = ? WHERE id = ?", (dumps(state), run_id))

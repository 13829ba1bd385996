"""Reads the dashboard needs beyond the core Store: replays of runs, capped counts.

A mixin of :class:`offload.store.sql.SqlStore`; the SQL is the same on both databases.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from offload.store.base import RunFilter

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

"""When each run's next attempt is due (its unleased RUN queue item).

A mixin of :class:`offload.store.sql.SqlStore`; the SQL is the same on both databases.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

T = TypeVar("T")
_CHUNK = 500


class NextAttemptQueries:
    """``run_next_attempts`` over the backend's ``_read``."""

    async def _read(self, fn: Callable[[Any], T]) -> T:  # supplied by SqlStore
        raise NotImplementedError

    async def run_next_attempts(self, *, run_ids: Sequence[str]) -> dict[str, datetime]:
        """For each run waiting for an attempt (a delay, a retry, a sleep), when it is due.

        Runs being worked on right now (their item is leased), ended runs and runs
        waiting for an event have no entry.
        """
        ids = list(dict.fromkeys(run_ids))

        def fn(tx: Any) -> dict[str, datetime]:
            out: dict[str, datetime] = {}
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start:start + _CHUNK]
                marks = ", ".join("?" for _ in chunk)
                rows = tx.execute(
                    f"SELECT run_id, MIN(due_at) FROM queue_items WHERE run_id IN ({marks}) "
                    "AND kind = 'run' AND lease_owner IS NULL GROUP BY run_id",  # noqa: S608
                    tuple(chunk))
                out.update({r[0]: datetime.fromtimestamp(int(r[1]) / 1000, tz=UTC)
                            for r in rows})
            return out
        return await self._read(fn) if ids else {}

"""Read-only statistics for the dashboard and ``/metrics``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from offload.clock import from_ms, to_ms
from offload.models import RunStatus
from offload.store.base import FunctionStat, QueueStat, RunBucket
from offload.store.rows import Tx, _dt
from offload.store.sql.dialect import Dialect

T = TypeVar("T")


class Stats(Dialect):
    """``function_stats``, ``queue_stats``, ``run_count_by_status``, ``run_stats``."""

    # -- statistics for the dashboard and /metrics (read-only) ---------------------------

    async def function_stats(self, *, since: datetime, limit: int = 10_000) -> list[FunctionStat]:
        """Outcomes and duration percentiles per function of the latest ``limit`` runs ended
        at or after ``since`` (percentiles computed here: SQLite has no percentile_cont)."""
        rows = await self._read(lambda tx: tx.execute(
            "SELECT function_id, status, ended_at - started_at FROM runs "
            "WHERE ended_at IS NOT NULL AND ended_at >= ? ORDER BY ended_at DESC LIMIT ?",
            (to_ms(since), limit)))
        counts: dict[str, dict[str, int]] = {}
        durations: dict[str, list[int]] = {}
        for function_id, status, duration in rows:
            per = counts.setdefault(function_id, {"completed": 0, "failed": 0, "cancelled": 0})
            per[status] = per.get(status, 0) + 1
            if duration is not None and status != RunStatus.CANCELLED.value:
                durations.setdefault(function_id, []).append(int(duration))
        out: list[FunctionStat] = []
        for function_id in sorted(counts):
            values = sorted(durations.get(function_id, []))
            per = counts[function_id]
            out.append(FunctionStat(
                function_id=function_id, completed=per["completed"], failed=per["failed"],
                cancelled=per["cancelled"], p50_ms=_percentile(values, 50),
                p95_ms=_percentile(values, 95), p99_ms=_percentile(values, 99)))
        return out

    async def queue_stats(self, *, now: datetime) -> list[QueueStat]:
        """Queue items per (queue, function, kind): due, scheduled, leased, oldest due time."""
        at = to_ms(now)
        rows = await self._read(lambda tx: tx.execute(
            "SELECT q.queue, r.function_id, q.kind, "
            "SUM(CASE WHEN q.lease_owner IS NULL AND q.due_at <= ? THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN q.lease_owner IS NULL AND q.due_at > ? THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN q.lease_owner IS NOT NULL THEN 1 ELSE 0 END), "
            "MIN(CASE WHEN q.lease_owner IS NULL AND q.due_at <= ? THEN q.due_at END) "
            "FROM queue_items q LEFT JOIN runs r ON r.id = q.run_id "
            "GROUP BY q.queue, r.function_id, q.kind ORDER BY q.queue, r.function_id, q.kind",
            (at, at, at)))
        return [QueueStat(queue=r[0], function_id=r[1], kind=r[2], due=int(r[3] or 0),
                          scheduled=int(r[4] or 0), leased=int(r[5] or 0),
                          oldest_due_at=from_ms(r[6])) for r in rows]

    async def run_count_by_status(self) -> dict[tuple[str, str], int]:
        """The number of runs per ``(function_id, status)``."""
        rows = await self._read(lambda tx: tx.execute(
            "SELECT function_id, status, COUNT(*) FROM runs GROUP BY function_id, status"))
        return {(r[0], r[1]): int(r[2]) for r in rows}

    async def run_stats(self, *, since: datetime, bucket_s: int) -> list[RunBucket]:
        """Runs created and ended per time bucket since ``since``, oldest bucket first."""
        if bucket_s < 1:
            raise ValueError("bucket_s must be at least 1")
        size = int(bucket_s) * 1000
        start = to_ms(since)

        def fn(tx: Tx) -> list[RunBucket]:
            # The bucket size is an int we computed, inlined so both databases divide
            # integers (a bound parameter's type would be guessed differently).
            created = tx.execute(
                f"SELECT created_at / {size}, COUNT(*), AVG(started_at - created_at), "
                f"MAX(started_at - created_at) FROM runs WHERE created_at >= ? "
                f"GROUP BY created_at / {size}", (start,))
            ended = tx.execute(
                f"SELECT ended_at / {size}, status, COUNT(*) FROM runs "
                f"WHERE ended_at IS NOT NULL AND ended_at >= ? "
                f"GROUP BY ended_at / {size}, status", (start,))
            buckets: dict[int, dict[str, Any]] = {}
            for bucket, count, lag_avg, lag_max in created:
                buckets.setdefault(int(bucket), {}).update(
                    created=int(count), lag_avg_ms=None if lag_avg is None else float(lag_avg),
                    lag_max_ms=None if lag_max is None else int(lag_max))
            for bucket, status, count in ended:
                if status in ("completed", "failed", "cancelled"):
                    buckets.setdefault(int(bucket), {})[status] = int(count)
            return [RunBucket(start=_dt(b * size), **buckets[b]) for b in sorted(buckets)]
        return await self._read(fn)


def _percentile(sorted_values: list[int], pct: int) -> int | None:
    """The nearest-rank percentile of already sorted values (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, -(-pct * len(sorted_values) // 100))
    return sorted_values[min(rank, len(sorted_values)) - 1]

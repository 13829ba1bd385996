"""The Store, written once against a small DB-API surface and run on both databases.

:class:`SqlStore` holds every query, in parts: :mod:`.dialect` (what a backend
supplies), :mod:`.write` (the one write path), :mod:`.queue` (leases and claims),
:mod:`.reads`, :mod:`.registry` (keys, apps, functions), :mod:`.stats`; the row
conversions are in :mod:`offload.store.rows` and flow-control admission in
:mod:`offload.store.admission`. A backend (``sqlite.py``, ``postgres.py``) supplies
only how a function gets a transaction (``_write``) or a read connection (``_read``),
and the few statements whose SQL differs (the claim). Functions passed to the backend
are synchronous and run in the backend's threads; they receive a :class:`Tx`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TypeVar

from offload.store import ops
from offload.store.dashboard_queries import DashboardQueries
from offload.store.engines import EngineQueries
from offload.store.next_attempts import NextAttemptQueries
from offload.store.rows import Tx
from offload.store.sessions import SessionQueries
from offload.store.sql.queue import EXHAUSTED_HOLD_MS, QueueOps
from offload.store.sql.reads import Reads
from offload.store.sql.registry import Registry
from offload.store.sql.stats import Stats
from offload.store.webhooks import WebhookQueries

__all__ = ["EXHAUSTED_HOLD_MS", "SqlStore", "Tx"]

T = TypeVar("T")


class SqlStore(Registry, Reads, QueueOps, Stats, EngineQueries, DashboardQueries,
               ops.OpsQueries, WebhookQueries, SessionQueries, NextAttemptQueries, abc.ABC):
    """Every query of the Store; subclasses supply transactions and dialect SQL."""

    @abc.abstractmethod
    async def _write(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in a write transaction; commit, or roll back on error."""

    @abc.abstractmethod
    async def _read(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` on a read connection."""

"""The synced functions, as the engine reads them on its hot paths."""

from __future__ import annotations

import time

from offload.models import Function
from offload.store.base import Store


class FunctionCatalog:
    """The synced functions, read from the store at most once per ``ttl`` seconds.

    Every event fan-out and every call to an app needs them; they change only when an
    app syncs. A sync through this engine invalidates the copy at once; one through
    another engine is seen within ``ttl``. A function missing from the copy is looked
    up in the store, so a newly synced one is never missed.
    """

    def __init__(self, store: Store, *, ttl: float = 1.0) -> None:
        self.store = store
        self.ttl = ttl
        self._by_id: dict[str, Function] = {}
        self._read_at = float("-inf")

    def invalidate(self) -> None:
        """Forget the copy (after a sync)."""
        self._read_at = float("-inf")

    async def all(self) -> list[Function]:
        """Every synced function."""
        if time.monotonic() - self._read_at > self.ttl:
            functions = await self.store.function_list()
            self._by_id = {f.id: f for f in functions}
            self._read_at = time.monotonic()
        return list(self._by_id.values())

    async def get(self, function_id: str) -> Function | None:
        """One function, or None if it is not synced."""
        await self.all()
        found = self._by_id.get(function_id)
        if found is None:
            found = await self.store.function_get(function_id=function_id)
        return found

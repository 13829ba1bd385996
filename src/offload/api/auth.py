"""Who may call the API: API keys as ``Authorization: Bearer``, with scopes.

``offload dev`` (and ``serve --insecure``) answers without credentials. Keys
found in the store are cached for a few seconds so the hot ingest path does
not read the database on every request; a revoked key stops working within
that time.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request

from offload.errors import AuthError, ForbiddenError
from offload.security import api_keys
from offload.security.api_keys import Scope
from offload.store.ops import Actor

_CACHE_S = 5.0


class Authenticator:
    """Checks bearer keys against settings and the store."""

    def __init__(self, request_state_engine: object) -> None:
        self.engine = request_state_engine
        self._cache: dict[str, tuple[str | None, Actor | None, float]] = {}

    async def scope_of(self, token: str) -> str | None:
        """The scope of ``token``, or None if it is not a valid key."""
        return (await self.identify(token))[0]

    async def identify(self, token: str) -> tuple[str | None, Actor | None]:
        """The scope of ``token`` and the key as an audit actor; (None, None) if invalid."""
        from offload.engine import Engine

        engine = self.engine
        assert isinstance(engine, Engine)
        digest = api_keys.hash_key(token)
        if api_keys.matches_any(token, engine.settings.api_keys):
            return "admin", Actor("api_key", f"env:{digest[:12]}", "OFFLOAD_API_KEYS")
        cached = self._cache.get(digest)
        if cached is not None and cached[2] > time.monotonic():
            return cached[0], cached[1]
        key = await engine.store.api_key_find(key_hash=digest)
        scope = key.scope if key else None
        actor = Actor("api_key", key.id, key.name) if key else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (scope, actor, time.monotonic() + _CACHE_S)
        return scope, actor


def bearer(request: Request) -> str | None:
    """The bearer token of a request, if any."""
    header = request.headers.get("authorization")
    if not header or not header.lower().startswith("bearer "):
        return None
    return header[7:].strip() or None


def require(scope: Scope) -> Callable[[Request], Awaitable[None]]:
    """A dependency that allows the request only with a key of ``scope`` (or admin)."""

    async def check(request: Request) -> None:
        engine = request.app.state.engine
        if engine.settings.open_access:
            return
        token = bearer(request)
        if token is None:
            raise AuthError("missing API key: send Authorization: Bearer <key>")
        found, actor = await request.app.state.auth.identify(token)
        request.state.actor = actor  # who did it, for the audit log
        if found is None:
            raise AuthError("invalid or revoked API key")
        if not api_keys.allows(found, scope):
            raise ForbiddenError(f"this key's scope ({found}) does not allow this; needs {scope}")

    return check

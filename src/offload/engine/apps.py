"""App sync: ask an Inngest SDK app to register its functions with this engine.

Syncing sends ``PUT <app url>`` with ``X-Inngest-Server-Kind`` (and, with a signing
key, a signed body); the SDK answers by calling ``POST /fn/register`` on this server,
which stores the app and its functions, and then relays that answer here. The API
(``/v1/apps``), the dashboard's Resync button and the CLI (through the API) all sync
through :class:`AppSync`. A failure raises :class:`AppSyncError` with a stable code,
and is recorded on the app (``sync_error``) when the app is known.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import orjson

from offload.clock import now
from offload.config import Settings
from offload.errors import NotFoundError, OutboundError
from offload.models import App
from offload.outbound.http import OutboundClient, send
from offload.protocol.canonical import canonical_json
from offload.protocol.runs import server_kind
from offload.protocol.signing import sign_request
from offload.store.base import Store


class AppSyncError(Exception):
    """A sync that failed: an HTTP ``status`` for the API, a stable ``code``, a message."""

    def __init__(self, status: int, code: str, message: str, *,
                 title: str = "The app could not be synced") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.title = title


def base_url(url: str) -> str:
    """``url`` without query, fragment or trailing slash (how apps are matched)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(query="", fragment="")).rstrip("/")


class AppSync:
    """Syncs apps by URL, and resyncs known apps."""

    def __init__(self, store: Store, client: OutboundClient, settings: Settings) -> None:
        self.store = store
        self.client = client
        self.settings = settings

    async def resync(self, app_id: str) -> App:
        """Sync a known app again from its URL."""
        app = await self.store.app_get(app_id=app_id)
        if app is None:
            raise NotFoundError(f"no app with id {app_id[:200]!r}")
        return await self.sync(app.url)

    async def sync(self, url: str) -> App:
        """PUT the app at ``url`` so it registers; the registered app."""
        settings = self.settings
        kind = server_kind(settings)
        content = canonical_json({"url": url})
        headers = {"Content-Type": "application/json", "X-Inngest-Server-Kind": kind}
        if settings.signing_key:
            headers["X-Inngest-Signature"] = sign_request(content, settings.signing_key, now())
        try:
            answer = await send(self.client, "PUT", url, headers=headers, content=content,
                                timeout_s=settings.call_timeout_s)
        except OutboundError as exc:
            raise await self._failed(url, 502, "app_unreachable",
                                     f"cannot reach the app at {base_url(url)}: {exc}") from None
        try:
            body: Any = orjson.loads(answer.body) if answer.body.strip() else {}
        except orjson.JSONDecodeError:
            body = {"error": answer.body[:300].decode(errors="replace")}
        body = body if isinstance(body, dict) else {}
        if answer.status >= 300:
            message = str(body.get("error") or body.get("message") or f"HTTP {answer.status}")
            code = str(body.get("code") or "")
            if code == "server_kind_mismatch" or "server kind" in message.lower():
                raise await self._failed(
                    url, 400, "server_kind_mismatch",
                    f"the app runs in the other mode than this {kind!r} server: {message}. "
                    "Use INNGEST_DEV=<offload url> with `offload dev`, or the same "
                    "INNGEST_SIGNING_KEY on both sides")
            if answer.status in (401, 403):
                raise await self._failed(
                    url, 502, "app_rejected_signature",
                    f"the app refused offload's request ({answer.status}: {message}); check "
                    "both sides use the same signing key")
            raise await self._failed(url, 502, "sync_failed",
                                     f"the app answered {answer.status} to the sync: {message}")
        if "x-inngest-sdk" not in answer.headers and "x-inngest-sync-kind" not in answer.headers:
            raise await self._failed(url, 502, "not_an_inngest_app",
                                     f"{base_url(url)} answered, but not as an Inngest SDK "
                                     "serve endpoint (no X-Inngest-SDK header)")
        app = await self.find(url, body.get("app_id"))
        if app is None:
            raise AppSyncError(502, "sync_failed",
                               "the app did not call POST /fn/register on this server; check "
                               "its INNGEST_BASE_URL / INNGEST_DEV points here",
                               title="The app answered but never registered")
        return app

    async def find(self, url: str, app_id: str | None) -> App | None:
        """The app with ``app_id``, else the one served at ``url``."""
        if app_id:
            found = await self.store.app_get(app_id=app_id)
            if found is not None:
                return found
        for app in await self.store.app_list():
            if base_url(app.url) == base_url(url):
                return app
        return None

    async def _failed(self, url: str, status: int, code: str, message: str) -> AppSyncError:
        app = await self.find(url, None)
        if app is not None:
            await self.store.app_set_sync_error(app_id=app.id, error=message, at=now())
        return AppSyncError(status, code, message)

"""``offload dev -u URL``: keep Inngest SDK apps synced while they restart.

A background thread probes each app's serve URL every second (``GET``, as the
Inngest dev server does). It syncs the app (``POST /v1/apps``) once the engine is
up, again whenever the app comes back after being unreachable (a restart), and
when the app reports a different number of functions (a reload that was quicker
than one probe). Every call has a timeout; failures are reported once per change,
never as tracebacks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

PROBE_TIMEOUT_S = 2.0
SYNC_TIMEOUT_S = 30.0


class AppWatcher(threading.Thread):
    """Syncs ``app_urls`` with the engine at ``engine_url`` and re-syncs them after restarts."""

    def __init__(self, engine_url: str, app_urls: list[str], *, every: float = 1.0,
                 api_key: str | None = None,
                 say: Callable[[str], None] = print) -> None:
        super().__init__(name="offload-dev-sync", daemon=True)
        self.engine_url = engine_url.rstrip("/")
        self.app_urls = list(dict.fromkeys(app_urls))
        self.every = every
        self.say = say
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._stop = threading.Event()
        self.synced: dict[str, Any] = {}
        """Per URL: the fingerprint of the app as last synced (absent: not synced)."""
        self.syncs = 0
        """Successful syncs so far (for tests and logs)."""
        self._reported: dict[str, str] = {}

    def stop(self) -> None:
        """Ask the thread to end after its current round."""
        self._stop.set()

    def run(self) -> None:
        with httpx.Client(timeout=PROBE_TIMEOUT_S) as http:
            if not self._wait_for_engine(http):
                return
            while not self._stop.is_set():
                for url in self.app_urls:
                    self._check(http, url)
                self._stop.wait(self.every)

    def _wait_for_engine(self, http: httpx.Client) -> bool:
        while not self._stop.is_set():
            try:
                if http.get(f"{self.engine_url}/readyz").status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            self._stop.wait(0.2)
        return False

    def _check(self, http: httpx.Client, url: str) -> None:
        fingerprint = self._probe(http, url)
        if fingerprint is None:  # unreachable: sync again once it is back
            if self.synced.pop(url, None) is not None or url not in self._reported:
                self._report(url, "down", f"app {url} is not reachable; it will be synced "
                             "when it is up")
            return
        if url in self.synced and self.synced[url] == fingerprint:
            return
        self._sync(http, url, fingerprint)

    def _probe(self, http: httpx.Client, url: str) -> Any:
        """A fingerprint of the app (its function count), or None when it does not answer."""
        try:
            response = http.get(url)
        except httpx.HTTPError:
            return None
        if response.status_code >= 500:
            return None
        try:
            body = response.json()
        except ValueError:
            return "up"
        return body.get("function_count", "up") if isinstance(body, dict) else "up"

    def _sync(self, http: httpx.Client, url: str, fingerprint: Any) -> None:
        try:
            response = http.post(f"{self.engine_url}/v1/apps", json={"url": url},
                                 headers=self.headers, timeout=SYNC_TIMEOUT_S)
        except httpx.HTTPError as exc:
            self._report(url, "error", f"syncing {url} failed: {exc or type(exc).__name__}")
            return
        if response.status_code >= 400:
            detail = _detail(response)
            self._report(url, "error", f"syncing {url} failed (HTTP {response.status_code}): "
                         f"{detail}")
            return
        body = response.json()
        functions = body.get("functions") if isinstance(body, dict) else None
        count = len(functions) if isinstance(functions, list) else "?"
        self.synced[url] = fingerprint
        self.syncs += 1
        app_id = body.get("id") if isinstance(body, dict) else "?"
        self._report(url, f"synced-{time.monotonic()}",
                     f"synced app {app_id} at {url}: {count} function(s)")

    def _report(self, url: str, state: str, message: str) -> None:
        if self._reported.get(url) == state:
            return
        self._reported[url] = state
        self.say(f"  [dev -u] {message}")


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return str(errors[0].get("message") or body.get("title"))
        return str(body.get("title") or body.get("detail") or body)[:200]
    return str(body)[:200]

"""Dashboard sessions, login and CSRF tokens.

Every browser gets a signed session cookie (itsdangerous, HMAC-SHA1 over a
timestamped payload; ``HttpOnly``, ``SameSite=Lax``, ``Secure`` on HTTPS) holding a
random session id, a CSRF token and, once logged in, who logged in. Every form
carries the CSRF token and every POST is refused (403) unless it matches the
session's — so a page on another site cannot submit our forms, and a token
stolen from one session is useless in another. Logging in issues a fresh
session (no fixation); logging out replaces it with an anonymous one.

Outside ``offload dev`` the dashboard needs a login: the dashboard password
(checked against ``OFFLOAD_DASHBOARD_PASSWORD_HASH``, see
:mod:`offload.security.passwords`) or an admin API key. Sessions are stateless:
they last :data:`MAX_AGE_S` and a stolen cookie stays valid until then unless
the session secret changes (``OFFLOAD_SESSION_SECRET``, or the generated
``<data_dir>/session_secret``; engines behind one load balancer must share it).
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from offload.config import Settings
from offload.security.passwords import verify_password

COOKIE = "offload_session"
MAX_AGE_S = 12 * 3600
"""How long a session lasts after login."""
LOCKOUT_FAILURES = 10
LOCKOUT_WINDOW_S = 300.0
"""Ten failed logins from one address within five minutes lock it out for the rest of them."""


@dataclass
class Session:
    """One browser's session. ``user`` is None until login."""

    sid: str
    csrf: str
    user: str | None = None
    changed: bool = False
    """Set when the cookie must be (re)sent."""


def session_secret(settings: Settings) -> str:
    """The configured secret, or one generated once into ``<data_dir>/session_secret``."""
    if settings.session_secret:
        return settings.session_secret
    path = settings.data_dir / "session_secret"
    if path.exists():
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return value


class Sessions:
    """Reads, issues and checks sessions."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._serializer = URLSafeTimedSerializer(session_secret(settings),
                                                  salt="offload.dashboard.session")
        self._failures: dict[str, deque[float]] = {}

    def new(self, user: str | None = None) -> Session:
        """A fresh session with new id and CSRF token."""
        return Session(sid=secrets.token_urlsafe(16), csrf=secrets.token_urlsafe(24),
                       user=user, changed=True)

    def load(self, request: Request) -> Session:
        """The request's session, or a new anonymous one (cached on the request)."""
        cached = getattr(request.state, "dashboard_session", None)
        if isinstance(cached, Session):
            return cached
        session = self._decode(request.cookies.get(COOKIE))
        request.state.dashboard_session = session
        return session

    def replace(self, request: Request, session: Session) -> None:
        """Use ``session`` for the rest of this request (login, logout)."""
        request.state.dashboard_session = session

    def _decode(self, raw: str | None) -> Session:
        if raw:
            try:
                data: Any = self._serializer.loads(raw, max_age=MAX_AGE_S)
            except BadSignature:
                data = None
            if (isinstance(data, dict) and isinstance(data.get("sid"), str)
                    and isinstance(data.get("csrf"), str)):
                user = data.get("user")
                return Session(sid=data["sid"], csrf=data["csrf"],
                               user=user if isinstance(user, str) else None)
        return self.new()

    def set_cookie(self, request: Request, response: Response) -> None:
        """Send the session cookie if the session is new or changed."""
        session = self.load(request)
        if not session.changed:
            return
        value = self._serializer.dumps({"sid": session.sid, "csrf": session.csrf,
                                        "user": session.user})
        response.set_cookie(COOKIE, value, max_age=MAX_AGE_S, httponly=True, samesite="lax",
                            secure=request.url.scheme == "https", path="/")

    @staticmethod
    def csrf_ok(session: Session, token: object) -> bool:
        """True if ``token`` is this session's CSRF token (constant-time)."""
        return isinstance(token, str) and bool(token) and hmac.compare_digest(
            token.encode(), session.csrf.encode())

    def logged_in(self, session: Session) -> bool:
        """True if the dashboard may be used with this session (always in dev)."""
        return self.settings.dev or session.user is not None

    # -- login ----------------------------------------------------------------------------

    def locked_out(self, client: str) -> bool:
        """True if ``client`` failed too often recently."""
        failures = self._failures.get(client)
        if not failures:
            return False
        cutoff = time.monotonic() - LOCKOUT_WINDOW_S
        while failures and failures[0] < cutoff:
            failures.popleft()
        return len(failures) >= LOCKOUT_FAILURES

    def record_failure(self, client: str) -> None:
        """Count a failed login from ``client``."""
        if len(self._failures) > 10_000:
            self._failures.clear()
        self._failures.setdefault(client, deque(maxlen=LOCKOUT_FAILURES)).append(
            time.monotonic())

    async def check_secret(self, secret: str, auth: Any) -> str | None:
        """Who ``secret`` logs in as: ``password``, ``admin key``, or None."""
        if not secret or len(secret) > 1024:
            return None
        stored: str | None = self.settings.dashboard_password_hash
        if stored is not None and await asyncio.to_thread(verify_password, secret, stored):
            return "password"
        if await auth.scope_of(secret) == "admin":
            return "admin key"
        return None

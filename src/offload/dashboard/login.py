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
:mod:`offload.security.passwords`) or an admin API key. A logged-in session is
also held server-side (table ``dashboard_sessions``, so it survives restarts and
is shared by engines on one database): logging out deletes it, and it ends when
the credential it was opened with changes (a new password hash, a revoked key),
so a copied cookie stops working then. Cookies are signed with the session
secret (``OFFLOAD_SESSION_SECRET``, or the generated ``<data_dir>/session_secret``;
engines behind one load balancer must share it) and last :data:`MAX_AGE_S` at most.

Guessing is slowed by :mod:`offload.security.login_throttle` per client address
(``X-Forwarded-For`` is believed only from ``OFFLOAD_TRUSTED_PROXIES``) or per
known browser (a signed device cookie set by a successful login).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from offload.clock import now
from offload.config import Settings
from offload.errors import StoreError
from offload.security import api_keys
from offload.security.login_throttle import LoginThrottle
from offload.security.passwords import verify_password

COOKIE = "offload_session"
DEVICE_COOKIE = "offload_device"
MAX_AGE_S = 12 * 3600
"""How long a session lasts after login."""
DEVICE_MAX_AGE_S = 180 * 24 * 3600
"""How long a browser stays known after a successful login (its own login throttle)."""
VERIFY_CACHE_S = 2.0
"""How long one engine trusts a session it checked against the store (logout elsewhere
takes effect within this time; on the engine that logged out, at once)."""


@dataclass
class Session:
    """One browser's session. ``user`` is None until login."""

    sid: str
    csrf: str
    user: str | None = None
    changed: bool = False
    """Set when the cookie must be (re)sent."""
    credential: str | None = None
    """Fingerprint of what the user logged in with (see :meth:`Sessions.credential`)."""


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
        secret = session_secret(settings)
        self._serializer = URLSafeTimedSerializer(secret, salt="offload.dashboard.session")
        self._devices = URLSafeTimedSerializer(secret, salt="offload.dashboard.device")
        self.throttle = LoginThrottle()
        self._verified: dict[str, float] = {}
        """Session ids checked against the store recently, with when the check expires."""

    def new(self, user: str | None = None, credential: str | None = None) -> Session:
        """A fresh session with new id and CSRF token."""
        return Session(sid=secrets.token_urlsafe(16), csrf=secrets.token_urlsafe(24),
                       user=user, changed=True, credential=credential)

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
                credential = data.get("cred")
                return Session(sid=data["sid"], csrf=data["csrf"],
                               user=user if isinstance(user, str) else None,
                               credential=credential if isinstance(credential, str) else None)
        return self.new()

    def set_cookie(self, request: Request, response: Response) -> None:
        """Send the session cookie if the session is new or changed."""
        session = self.load(request)
        if not session.changed:
            return
        value = self._serializer.dumps({"sid": session.sid, "csrf": session.csrf,
                                        "user": session.user, "cred": session.credential})
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

    def throttle_key(self, request: Request) -> tuple[str, bool]:
        """Whose attempts these are: the known browser (device cookie), else the address.

        The address is the peer's, or ``X-Forwarded-For``'s only when the peer is one
        of ``OFFLOAD_TRUSTED_PROXIES`` (the server applies that before we see it).
        """
        device = self.device_id(request)
        if device is not None:
            return f"device:{device}", True
        return f"addr:{request.client.host if request.client else 'unknown'}", False

    def device_id(self, request: Request) -> str | None:
        """The browser's device id if it carries a valid device cookie."""
        raw = request.cookies.get(DEVICE_COOKIE)
        if not raw:
            return None
        try:
            value: Any = self._devices.loads(raw, max_age=DEVICE_MAX_AGE_S)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None

    def set_device_cookie(self, request: Request, response: Response) -> None:
        """Mark this browser as known (after a successful login)."""
        device = self.device_id(request) or secrets.token_urlsafe(16)
        response.set_cookie(DEVICE_COOKIE, self._devices.dumps(device),
                            max_age=DEVICE_MAX_AGE_S, httponly=True, samesite="lax",
                            secure=request.url.scheme == "https", path="/")

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

    def credential(self, who: str, secret: str) -> str:
        """A fingerprint of the credential a login used; the session ends when it changes."""
        if who == "password":
            stored = self.settings.dashboard_password_hash or ""
            return "password:" + hashlib.sha256(stored.encode()).hexdigest()[:32]
        return "key:" + api_keys.hash_key(secret)

    async def _credential_current(self, credential: str, store: Any) -> bool:
        kind, _, value = credential.partition(":")
        if kind == "password":
            return hmac.compare_digest(credential, self.credential("password", ""))
        if kind == "key":
            if any(hmac.compare_digest(value, api_keys.hash_key(k))
                   for k in self.settings.api_keys):
                return True
            key = await store.api_key_find(key_hash=value)
            return key is not None and key.scope == "admin"
        return False

    # -- server-side session state --------------------------------------------------------

    async def begin(self, request: Request, who: str, secret: str) -> Session:
        """Log in: a fresh session (no fixation), recorded in the store."""
        session = self.new(user=who, credential=self.credential(who, secret))
        at = now()
        await request.app.state.engine.store.dashboard_session_insert(
            sid=session.sid, login=who, credential=session.credential, at=at,
            expires_at=at + timedelta(seconds=MAX_AGE_S))
        self.replace(request, session)
        return session

    async def end(self, request: Request) -> None:
        """Log out: delete the session server-side; the browser gets an anonymous one."""
        session = self.load(request)
        if session.user is not None:
            self._verified.pop(session.sid, None)
            await request.app.state.engine.store.dashboard_session_delete(sid=session.sid)
        self.replace(request, self.new())

    async def verify(self, request: Request) -> None:
        """Drop the login of a session that ended server-side (logout, new credential).

        Run before every dashboard request; a session without a login costs nothing.
        """
        if self.settings.dev or COOKIE not in request.cookies:
            return
        session = self.load(request)
        if session.user is None:
            return
        at = time.monotonic()
        if self._verified.get(session.sid, 0.0) > at:
            return
        store = request.app.state.engine.store
        try:
            credential = await store.dashboard_session_credential(sid=session.sid, at=now())
            ok = (credential is not None and credential == session.credential
                  and await self._credential_current(credential, store))
        except StoreError:  # fail closed for this request, but keep the browser's cookie
            self.replace(request, Session(sid=session.sid, csrf=session.csrf))
            return
        if ok:
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[session.sid] = at + VERIFY_CACHE_S
            return
        self._verified.pop(session.sid, None)
        self.replace(request, self.new())


def sessions_of(request: Request) -> Sessions:
    """The app's :class:`Sessions` (made on first use)."""
    sessions = getattr(request.app.state, "dashboard_sessions", None)
    if not isinstance(sessions, Sessions):
        sessions = Sessions(request.app.state.engine.settings)
        request.app.state.dashboard_sessions = sessions
    return sessions


async def verify_session(request: Request) -> None:
    """An app-wide dependency: a session that ended server-side is logged out."""
    if COOKIE in request.cookies:
        await sessions_of(request).verify(request)

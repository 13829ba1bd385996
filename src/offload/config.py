"""Settings from flags and ``OFFLOAD_*`` environment variables, read in one place.

This is the only module that reads ``os.environ``. Every secret also accepts
``OFFLOAD_<NAME>_FILE`` (a path whose contents are the secret), so secrets can
come from mounted files rather than the process environment.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from offload.errors import ConfigError

Mode = Literal["dev", "serve"]


@dataclass(frozen=True)
class Settings:
    """Everything the engine can be told. Defaults are for ``offload dev``."""

    mode: Mode = "dev"
    host: str = "127.0.0.1"
    port: int = 8288
    data_dir: Path = Path(".offload")
    database_url: str | None = None
    """``sqlite:///path`` or ``postgresql://…``. Defaults to ``<data_dir>/offload.db``."""
    insecure: bool = False
    """Serve without API keys. Only ``dev`` does this without being told."""
    api_keys: tuple[str, ...] = ()
    """Admin API keys given in the environment (``OFFLOAD_API_KEYS``, comma-separated)."""
    event_keys: tuple[str, ...] = ()
    """Keys accepted in ``/e/{event_key}`` outside dev mode."""
    signing_key: str | None = None
    """The Inngest signing key shared with apps (``signkey-<env>-<hex>``)."""
    signing_key_fallback: str | None = None
    """The previous signing key, accepted during key rotation."""
    webhook_secret: str | None = None
    """Standard Webhooks secret (``whsec_…``) for HTTP-task calls and callbacks."""
    secrets_key: str | None = None
    """Key (32 bytes, base64 or hex) encrypting stored secrets; ``dev`` keeps one in the
    data dir. ``serve`` refuses to start without it once secrets are stored."""
    outbound_allow: tuple[str, ...] = ()
    """CIDRs or host names outbound calls may reach although private."""
    allow_private: bool = False
    max_body_bytes: int = 1024 * 1024
    """Largest request body the API accepts; larger ones get 413. Default 1 MiB."""
    max_response_bytes: int = 1024 * 1024
    """Largest target or app response kept; the rest is cut. Default 1 MiB."""
    call_timeout_s: float = 30.0
    """Default timeout of one call to an app or target."""
    lease_s: float = 30.0
    """How long a claim is held without renewal; a dead engine's work is rescued after it."""
    rescue_every_s: float = 5.0
    max_lease_expiries: int = 5
    """A run whose lease expires this many times fails as ``lease_exhausted``."""
    max_inflight: int = 256
    """Queue items one engine works on at once."""
    retention_days: float = 7.0
    """Finished runs, their steps and events are pruned after this many days."""
    cron_catchup: int = 1
    """Missed cron ticks fired after downtime: the latest N (0 skips them all)."""
    test_crash_at: str | None = None
    """Tests only: a named crash point (``offload.faults``) where the engine kills itself."""
    trusted_proxies: tuple[str, ...] = ()
    """Addresses or CIDRs of reverse proxies whose ``X-Forwarded-For``/``-Proto`` are
    believed (``OFFLOAD_TRUSTED_PROXIES``). Empty: the peer address is the client."""
    node_id: str | None = None
    """This host's identity (``--node-id``); by default one generated once in the data dir.
    A restarted engine takes back the leases of its previous process under the same id."""
    dashboard_password_hash: str | None = None
    session_secret: str | None = None
    log_level: str = "info"
    log_payloads: bool = False
    alert_rules: str | None = None
    """Alert rules as a JSON list (``OFFLOAD_ALERT_RULES`` or ``_FILE``); see docs/alerts.md."""
    alert_every_s: float = 15.0
    """How often each engine evaluates the alert rules."""
    audit_retention_days: float = 90.0
    """Audit-log entries are pruned after this many days."""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dev(self) -> bool:
        """True in ``offload dev``."""
        return self.mode == "dev"

    @property
    def open_access(self) -> bool:
        """True when the API answers without credentials."""
        return self.dev or self.insecure

    @property
    def base_url(self) -> str:
        """The URL the engine is reachable at on this host."""
        return f"http://{self.host}:{self.port}"

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'offload.db').resolve()}"

    def signing_keys(self) -> list[str]:
        """Current and fallback signing keys, current first."""
        return [k for k in (self.signing_key, self.signing_key_fallback) if k]


_ENV_FIELDS: dict[str, str] = {
    "HOST": "host", "PORT": "port", "DATA_DIR": "data_dir", "DATABASE_URL": "database_url",
    "INSECURE": "insecure", "API_KEYS": "api_keys", "EVENT_KEYS": "event_keys",
    "SIGNING_KEY": "signing_key", "SIGNING_KEY_FALLBACK": "signing_key_fallback",
    "WEBHOOK_SECRET": "webhook_secret", "SECRETS_KEY": "secrets_key",
    "OUTBOUND_ALLOW": "outbound_allow",
    "ALLOW_PRIVATE": "allow_private", "MAX_BODY_BYTES": "max_body_bytes",
    "MAX_RESPONSE_BYTES": "max_response_bytes", "CALL_TIMEOUT_S": "call_timeout_s",
    "LEASE_S": "lease_s", "RESCUE_EVERY_S": "rescue_every_s",
    "MAX_LEASE_EXPIRIES": "max_lease_expiries", "MAX_INFLIGHT": "max_inflight",
    "RETENTION_DAYS": "retention_days", "CRON_CATCHUP": "cron_catchup", "NODE_ID": "node_id",
    "TRUSTED_PROXIES": "trusted_proxies", "TEST_CRASH_AT": "test_crash_at",
    "DASHBOARD_PASSWORD_HASH": "dashboard_password_hash", "SESSION_SECRET": "session_secret",
    "LOG_LEVEL": "log_level", "LOG_PAYLOADS": "log_payloads",
    "ALERT_RULES": "alert_rules", "ALERT_EVERY_S": "alert_every_s",
    "AUDIT_RETENTION_DAYS": "audit_retention_days",
}
_SECRETS = {"API_KEYS", "EVENT_KEYS", "SIGNING_KEY", "SIGNING_KEY_FALLBACK", "WEBHOOK_SECRET",
            "SECRETS_KEY",
            "DASHBOARD_PASSWORD_HASH", "SESSION_SECRET", "DATABASE_URL",
            "ALERT_RULES"}  # not secret, but long: ALERT_RULES_FILE reads it from a file


def _convert(name: str, raw: str) -> Any:
    kind = Settings.__dataclass_fields__[name].type
    try:
        if "tuple" in str(kind):
            return tuple(v.strip() for v in raw.split(",") if v.strip())
        if "bool" in str(kind):
            if raw.lower() not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                raise ValueError("expected true or false")
            return raw.lower() in {"1", "true", "yes", "on"}
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if "Path" in str(kind):
            return Path(raw)
    except ValueError as exc:
        raise ConfigError(f"OFFLOAD_{name.upper()}: {exc}") from None
    return raw


def from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from ``OFFLOAD_*`` variables (and ``*_FILE`` for secrets), then ``overrides``.

    Flags win over the environment: the CLI passes the flags it was given as overrides.
    """
    source = os.environ if env is None else env
    values: dict[str, Any] = {}
    for suffix, name in _ENV_FIELDS.items():
        raw = source.get(f"OFFLOAD_{suffix}")
        if raw is None and suffix in _SECRETS:
            path = source.get(f"OFFLOAD_{suffix}_FILE")
            if path:
                try:
                    raw = Path(path).read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise ConfigError(f"OFFLOAD_{suffix}_FILE: cannot read {path}: "
                                      f"{exc.strerror}") from None
        if raw is not None and raw != "":
            values[name] = _convert(name, raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(**values)
    validate(settings)
    return settings


NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
"""A node id (``--node-id`` / ``OFFLOAD_NODE_ID``): 1-63 letters, digits, ``.``, ``_``, ``-``."""


def validate_node_id(node_id: str) -> str:
    """``node_id`` if it is 1-63 letters, digits, ``.``, ``_`` or ``-``; else ConfigError."""
    if not NODE_ID.fullmatch(node_id):
        raise ConfigError("node id must be 1-63 letters, digits, '.', '_' or '-', starting "
                          "with a letter or digit")
    return node_id


def validate(settings: Settings) -> None:
    """Raise ConfigError for settings the engine must not start with."""
    if not 0 < settings.port < 65536:
        raise ConfigError(f"port {settings.port} is out of range")
    if settings.max_body_bytes < 1024:
        raise ConfigError("max_body_bytes must be at least 1024")
    if settings.alert_every_s < 0.1:
        raise ConfigError("alert_every_s must be at least 0.1")
    if settings.lease_s <= 1:
        raise ConfigError("lease_s must be more than 1 second")
    for proxy in settings.trusted_proxies:
        import ipaddress

        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(f"OFFLOAD_TRUSTED_PROXIES: {proxy[:60]!r} is not an IP address "
                              "or CIDR") from None
    if settings.test_crash_at:
        from offload.faults import parse

        parse(settings.test_crash_at)
    if settings.node_id is not None:
        validate_node_id(settings.node_id)
    for key in settings.signing_keys():
        from offload.protocol.signing import validate_signing_key

        try:
            validate_signing_key(key)
        except Exception as exc:  # noqa: BLE001 - reworded without the key itself
            raise ConfigError(f"signing key is malformed ({exc.__class__.__name__}): it must "
                              "look like signkey-<env>-<hex>") from None


def ensure_webhook_secret(settings: Settings) -> Settings:
    """Settings with a webhook secret: the configured one, or (dev) one kept in the data dir."""
    if settings.webhook_secret:
        return settings
    path = settings.data_dir / "webhook_secret"
    if path.exists():
        secret = path.read_text(encoding="utf-8").strip()
    else:
        import base64

        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secret + "\n", encoding="utf-8")
        path.chmod(0o600)
    return replace(settings, webhook_secret=secret)

"""Every exception offload raises.

::

    OffloadError
    ├── ConfigError              bad settings; the engine refuses to start
    ├── ValidationError          bad input; carries the field and the problem
    ├── NotFoundError            a run, app, function or event that does not exist
    ├── ConflictError            a state change the current state does not allow
    ├── AuthError                missing or wrong credentials
    │   └── ForbiddenError           valid credentials, wrong scope
    ├── StoreError               the database failed or is unreachable
    │   ├── StoreUnavailableError    cannot reach the database (answer 503)
    │   ├── LeaseLostError           a fenced write whose lease moved on
    │   ├── StaleRunError            a guarded run write whose run state changed meanwhile
    │   └── SchemaVersionError       the schema is older or newer than this code
    ├── OutboundError            a call offload made failed
    │   └── AddressRefusedError      the SSRF guard refused the destination
    ├── SignatureError           a signature is missing, malformed, stale or wrong
    ├── ProtocolError            an SDK answered something the protocol does not allow
    ├── ExpressionError          a CEL expression failed to compile or evaluate
    ├── CronError                a cron expression is malformed
    └── ClientError              raised by offload.Client for non-2xx answers
"""

from __future__ import annotations

from typing import Any


class OffloadError(Exception):
    """Base of every offload exception."""


class ConfigError(OffloadError):
    """Settings are invalid; the engine refuses to start."""


class ValidationError(OffloadError):
    """Bad input. ``field`` is a dotted path (``body.url``), ``code`` a snake_case problem."""

    def __init__(self, field: str, message: str, code: str = "invalid") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.code = code


class NotFoundError(OffloadError):
    """The thing asked for does not exist."""


class ConflictError(OffloadError):
    """The requested change is not allowed in the current state."""


class AuthError(OffloadError):
    """Missing or wrong credentials."""


class ForbiddenError(AuthError):
    """Valid credentials without the scope this needs."""


class StoreError(OffloadError):
    """The store failed."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached; callers answer 503 with Retry-After."""


class StoreFullError(StoreUnavailableError):
    """The database's disk is full: nothing was written; writes work again once space
    is freed (callers answer 503 saying so)."""


class LeaseLostError(StoreError):
    """A fenced write was refused because the lease token no longer matches."""


class StaleRunError(StoreError):
    """A run patch with ``expect_state`` found a different state (or an ended run)."""


class SchemaVersionError(StoreError):
    """The database schema is not the version this code expects."""


class OutboundError(OffloadError):
    """An outbound HTTP call failed before a response arrived."""


class AddressRefusedError(OutboundError):
    """The SSRF guard refused to connect to this destination."""


class SignatureError(OffloadError):
    """A signature is missing, malformed, stale or does not verify."""


class ProtocolError(OffloadError):
    """An SDK response violates the wire protocol."""


class ExpressionError(OffloadError):
    """A CEL expression failed to compile or evaluate."""


class CronError(OffloadError):
    """A cron expression is malformed."""


class ClientError(OffloadError):
    """A non-2xx answer to offload.Client; ``status`` and ``body`` hold the details."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body

"""API keys: ``ofk_<scope>_<random>``, stored as SHA-256, checked in constant time.

The secret is shown once when created; only its hash is stored, so a database
leak does not leak usable keys. Scopes: ``ingest`` (send tasks and events) and
``admin`` (everything).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Literal

Scope = Literal["ingest", "admin"]
SCOPES: tuple[Scope, ...] = ("ingest", "admin")
PREFIX = "ofk_"


def generate(scope: Scope) -> str:
    """A new key secret for ``scope``."""
    return f"{PREFIX}{scope}_{secrets.token_urlsafe(32)}"


def hash_key(secret: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(secret.encode()).hexdigest()


def allows(scope: str, needed: Scope) -> bool:
    """True if a key of ``scope`` may do what needs ``needed``."""
    return scope == "admin" or scope == needed


def matches_any(secret: str, configured: tuple[str, ...]) -> bool:
    """Constant-time check of ``secret`` against keys given in settings."""
    found = False
    for candidate in configured:
        found |= hmac.compare_digest(secret.encode(), candidate.encode())
    return found

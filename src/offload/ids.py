"""Identifiers: ULIDs for runs, events and queue items; random tokens for leases."""

from __future__ import annotations

import secrets

from ulid import ULID


def new_id() -> str:
    """A new ULID as a 26-character string; sorts by creation time."""
    return str(ULID())


def new_token() -> str:
    """A random lease token, used to fence writes from an attempt."""
    return secrets.token_hex(12)

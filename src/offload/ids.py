"""Identifiers: ULIDs for runs, events and queue items; random tokens for leases."""

from __future__ import annotations

import base64
import os
import secrets
import threading
import time

_B32 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_CROCKFORD = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TO_CROCKFORD = bytes.maketrans(_B32, _CROCKFORD)
_RANDOM_MAX = (1 << 80) - 1
_lock = threading.Lock()
_last_ms = -1
_last_random = 0


def new_id() -> str:
    """A new ULID as a 26-character string; sorts by creation time.

    48 bits of milliseconds since the epoch, then 80 random bits. Ids made in the
    same millisecond by this process increment the random part, so they sort in
    the order they were made (the ULID spec's monotonic mode).
    """
    global _last_ms, _last_random
    ms = time.time_ns() // 1_000_000
    with _lock:
        if ms <= _last_ms and _last_random < _RANDOM_MAX:
            ms = _last_ms  # same millisecond (or the clock stepped back): keep order
            rand = _last_random + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big")
        _last_ms, _last_random = ms, rand
    value = ((ms & 0xFFFF_FFFF_FFFF) << 80) | rand
    # 26 Crockford base-32 digits = 130 bits: the top 130 bits of a 136-bit field.
    return base64.b32encode((value << 6).to_bytes(17, "big"))[:26].translate(
        _TO_CROCKFORD).decode("ascii")


def new_token() -> str:
    """A random lease token, used to fence writes from an attempt."""
    return secrets.token_hex(12)

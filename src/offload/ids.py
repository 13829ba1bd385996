"""Identifiers: ULIDs for runs, events and queue items; random tokens for leases."""

from __future__ import annotations

import os
import secrets
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
"""Two Crockford base-32 digits for each 10-bit value."""
_RANDOM_MAX = (1 << 80) - 1
_lock = threading.Lock()
_last_ms = -1
_last_random = 0
_prefix_ms = -1
_prefix = ""


def new_id() -> str:
    """A new ULID as a 26-character string; sorts by creation time.

    48 bits of milliseconds since the epoch, then 80 random bits. Ids made in the
    same millisecond by this process increment the random part, so they sort in
    the order they were made (the ULID spec's monotonic mode).
    """
    global _last_ms, _last_random, _prefix_ms, _prefix
    ms = time.time_ns() // 1_000_000
    with _lock:
        if ms <= _last_ms and _last_random < _RANDOM_MAX:
            ms = _last_ms  # same millisecond (or the clock stepped back): keep order
            rand = _last_random + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big")
        _last_ms, _last_random = ms, rand
        if ms != _prefix_ms:
            # 10 digits = 50 bits: the 48-bit timestamp with two leading zero bits.
            t = ms & 0xFFFF_FFFF_FFFF
            _prefix = "".join([_PAIRS[(t >> s) & 1023] for s in (40, 30, 20, 10, 0)])
            _prefix_ms = ms
        prefix = _prefix
    # 16 digits = the 80 random bits.
    return prefix + "".join([_PAIRS[(rand >> s) & 1023] for s in (70, 60, 50, 40, 30, 20, 10, 0)])


def new_ids(count: int) -> list[str]:
    """``count`` new ULIDs, as ``count`` calls of :func:`new_id` would make them (same
    format, same monotonic order, after any id made before), with one clock read.

    They share the millisecond of the clock read and increment the random part, so they
    sort in the order given; the next :func:`new_id` sorts after the last of them.
    """
    global _last_ms, _last_random, _prefix_ms, _prefix
    if count <= 0:
        return []
    ms = time.time_ns() // 1_000_000
    with _lock:
        if ms <= _last_ms:
            if _last_random + count > _RANDOM_MAX:  # would overflow: one at a time
                first = None
            else:
                ms = _last_ms  # same millisecond (or the clock stepped back): keep order
                first = _last_random + 1
        else:
            first = int.from_bytes(os.urandom(10), "big")
            if first + count - 1 > _RANDOM_MAX:
                first = None
        if first is not None:
            _last_ms, _last_random = ms, first + count - 1
            if ms != _prefix_ms:
                t = ms & 0xFFFF_FFFF_FFFF
                _prefix = "".join([_PAIRS[(t >> s) & 1023] for s in (40, 30, 20, 10, 0)])
                _prefix_ms = ms
            prefix = _prefix
    if first is None:
        return [new_id() for _ in range(count)]
    pairs = _PAIRS
    ids = []
    high = -1
    head = ""
    for rand in range(first, first + count):
        if rand >> 40 != high:  # the upper 40 random bits change rarely within a batch
            high = rand >> 40
            head = prefix + "".join([pairs[(high >> s) & 1023] for s in (30, 20, 10, 0)])
        ids.append(head + pairs[(rand >> 30) & 1023] + pairs[(rand >> 20) & 1023]
                   + pairs[(rand >> 10) & 1023] + pairs[rand & 1023])
    return ids


def new_token() -> str:
    """A random lease token, used to fence writes from an attempt."""
    return secrets.token_hex(12)

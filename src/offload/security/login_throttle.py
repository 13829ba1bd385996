"""Slow down password guessing on the dashboard login without locking anyone out.

Each failed login from one *key* (a client address, or a browser that logged in
before and carries a signed device cookie) makes the next attempt from that key
wait: the first :data:`FREE_FAILURES` cost nothing, then 1 s, 2 s, 4 s … up to
:data:`MAX_DELAY_S`. An attempt made before its wait is over is answered ``429``
with ``Retry-After`` and the password is not checked. The count is forgotten
:data:`FORGET_AFTER_S` after the last failure and reset by a success.

A global ceiling bounds guessing spread over many addresses: past
:data:`GLOBAL_FAILURES` failures within :data:`GLOBAL_WINDOW_S`, attempts from
unknown browsers are spaced :data:`GLOBAL_SPACING_S` apart, all addresses
together.

Neither locks out the right password: waits are short and capped, and a browser
that logged in before (device cookie) is throttled only by its own failures, so an
attacker behind the same proxy, or a distributed attack, cannot keep its user out
(the "device cookie" scheme of OWASP's authentication guidance).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

FREE_FAILURES = 3
MAX_DELAY_S = 60.0
FORGET_AFTER_S = 15 * 60.0
GLOBAL_FAILURES = 100
GLOBAL_WINDOW_S = 60.0
GLOBAL_SPACING_S = 1.0
_MAX_KEYS = 100_000


@dataclass
class _Record:
    failures: int = 0
    last_failure: float = 0.0


def delay_after(failures: int) -> float:
    """Seconds an attempt must wait after ``failures`` consecutive failures."""
    if failures < FREE_FAILURES:
        return 0.0
    return min(2.0 ** (failures - FREE_FAILURES), MAX_DELAY_S)


class LoginThrottle:
    """Per-key exponential delay plus a global ceiling (in memory, per engine process)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._records: dict[str, _Record] = {}
        self._global: deque[float] = deque()
        self._global_next = 0.0

    def wait(self, key: str, *, known_device: bool = False) -> float:
        """Seconds ``key`` must still wait before its password is checked (0: go ahead).

        Going ahead reserves the global slot, so concurrent attempts space out.
        """
        at = self._clock()
        record = self._records.get(key)
        if record is not None and at - record.last_failure > FORGET_AFTER_S:
            del self._records[key]
            record = None
        if record is not None:
            remaining = record.last_failure + delay_after(record.failures) - at
            if remaining > 0:
                return remaining
        if known_device:
            return 0.0
        while self._global and self._global[0] < at - GLOBAL_WINDOW_S:
            self._global.popleft()
        if len(self._global) >= GLOBAL_FAILURES:
            if self._global_next > at:
                return self._global_next - at
            self._global_next = at + GLOBAL_SPACING_S
        return 0.0

    def failed(self, key: str, *, known_device: bool = False) -> None:
        """Count a failed attempt of ``key``."""
        at = self._clock()
        if len(self._records) >= _MAX_KEYS:
            self._records.clear()  # bounded memory; the global ceiling still holds
        record = self._records.setdefault(key, _Record())
        record.failures += 1
        record.last_failure = at
        if not known_device:
            self._global.append(at)
            if len(self._global) > 10 * GLOBAL_FAILURES:
                self._global.popleft()

    def succeeded(self, key: str) -> None:
        """Forget ``key``'s failures."""
        self._records.pop(key, None)

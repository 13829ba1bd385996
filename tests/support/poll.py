"""Waiting for something another process does: the suite's one polling loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import httpx

T = TypeVar("T")


def answers(url: str) -> bool:
    """Whether something answers HTTP at ``url`` (any status): a probe for ``eventually``."""
    try:
        httpx.get(url, timeout=1)
    except httpx.HTTPError:
        return False
    return True


def eventually(probe: Callable[[], T | None], *, timeout: float = 15.0,
               interval: float = 0.05, what: str = "the condition",
               detail: Callable[[], object] | None = None) -> T:
    """Call ``probe`` until it returns something truthy; that value.

    Fails with ``what`` in the message once ``timeout`` seconds have passed (followed by
    ``detail()``, if given: the state seen, a log tail). Exceptions from ``probe``
    propagate (catch the expected ones inside it).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            message = f"timed out after {timeout:g}s waiting for {what}"
            if detail is not None:
                message += f": {detail()}"
            raise AssertionError(message)
        time.sleep(interval)

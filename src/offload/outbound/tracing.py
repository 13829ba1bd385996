"""W3C Trace Context: a ``traceparent`` header on every call offload makes for a run.

A run's trace id is derived from its id (the first 32 hex digits of SHA-256 of
the run id), so every attempt, callback and app call of one run shares a trace
without storing anything, and anyone holding the run id can find the trace. When
the request that created the run carried a valid ``traceparent`` (``POST /v1/tasks``,
``/e/{key}``, ``/w/{id}``), that trace is continued instead: the caller's trace id
and sampled flag are kept. Each call gets a fresh random span id. offload itself
exports no spans (no OpenTelemetry exporter yet); receivers decide what to record.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping

__all__ = ["parse_traceparent", "trace_id", "traceparent", "with_traceparent"]

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def trace_id(run_id: str, parent: str | None = None) -> str:
    """The run's 32-hex-digit trace id: the continued caller's, or derived from the id."""
    continued = parse_traceparent(parent)
    if continued is not None:
        return continued.split("-")[1]
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:32]
    # All zeros is invalid in W3C Trace Context; a SHA-256 prefix of zeros is
    # astronomically unlikely, but stay valid anyway.
    return digest if digest.strip("0") else "0" * 31 + "1"


def parse_traceparent(value: str | None) -> str | None:
    """A valid incoming ``traceparent`` normalised to version 00, or None.

    Invalid values (all-zero ids, version ff, wrong shape) are ignored, as the W3C
    spec asks: the run then starts its own trace.
    """
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None:
        return None
    version, trace, span, flags = match.groups()
    if version == "ff" or not trace.strip("0") or not span.strip("0"):
        return None
    if version == "00" and len(value.strip()) != 55:
        return None
    return f"00-{trace}-{span}-{flags}"


def traceparent(run_id: str, parent: str | None = None) -> str:
    """A ``traceparent`` value for one call of the run: version 00, new span.

    With ``parent`` (a stored incoming traceparent) its trace id and flags are kept;
    otherwise the run's own trace, sampled.
    """
    continued = parse_traceparent(parent)
    if continued is not None:
        _, trace, _, flags = continued.split("-")
        return f"00-{trace}-{_span_id()}-{flags}"
    return f"00-{trace_id(run_id)}-{_span_id()}-01"


def _span_id() -> str:
    """A fresh non-zero span id. Random, not secret: ``random`` rather than ``secrets``,
    whose read of the OS's random source cost ~3% of the engine's time per app call."""
    return f"{random.getrandbits(64) or 1:016x}"


def with_traceparent(headers: Mapping[str, str] | None, run_id: str,
                     parent: str | None = None) -> dict[str, str]:
    """A copy of ``headers`` with offload's ``traceparent`` (replacing any given one)."""
    out = {k: v for k, v in (headers or {}).items()
           if k.lower() not in ("traceparent", "tracestate")}
    out["traceparent"] = traceparent(run_id, parent)
    return out

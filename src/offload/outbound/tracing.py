"""W3C Trace Context: a ``traceparent`` header on every call offload makes for a run.

A run's trace id is derived from its id (the first 32 hex digits of SHA-256 of
the run id), so every attempt, callback and app call of one run shares a trace
without storing anything, and anyone holding the run id can find the trace. Each
call gets a fresh random span id. Sampled flag set: offload itself exports no
spans (no OpenTelemetry exporter yet); receivers decide what to record.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping

__all__ = ["trace_id", "traceparent", "with_traceparent"]


def trace_id(run_id: str) -> str:
    """The run's 32-hex-digit trace id."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:32]
    # All zeros is invalid in W3C Trace Context; a SHA-256 prefix of zeros is
    # astronomically unlikely, but stay valid anyway.
    return digest if digest.strip("0") else "0" * 31 + "1"


def traceparent(run_id: str) -> str:
    """A ``traceparent`` value for one call of the run: version 00, new span, sampled."""
    return f"00-{trace_id(run_id)}-{secrets.token_hex(8)}-01"


def with_traceparent(headers: Mapping[str, str] | None, run_id: str) -> dict[str, str]:
    """A copy of ``headers`` with offload's ``traceparent`` (replacing any given one)."""
    out = {k: v for k, v in (headers or {}).items()
           if k.lower() not in ("traceparent", "tracestate")}
    out["traceparent"] = traceparent(run_id)
    return out

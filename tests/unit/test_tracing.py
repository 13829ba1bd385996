"""W3C traceparent for outbound calls: trace id derived from the run id."""

from __future__ import annotations

import hashlib
import re

from offload.outbound.tracing import trace_id, traceparent, with_traceparent


def test_traceparent__format_and_trace_id_from_run_id() -> None:
    value = traceparent("01RUN")
    match = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01", value)
    assert match
    assert match.group(1) == hashlib.sha256(b"01RUN").hexdigest()[:32] == trace_id("01RUN")
    assert traceparent("01RUN").split("-")[2] != value.split("-")[2]


def test_with_traceparent__replaces_given_context_and_keeps_other_headers() -> None:
    out = with_traceparent({"TraceParent": "00-x-y-00", "tracestate": "a=b", "X-A": "1"}, "r")
    assert out["X-A"] == "1" and "TraceParent" not in out and "tracestate" not in out
    assert out["traceparent"].startswith(f"00-{trace_id('r')}-")
    assert with_traceparent(None, "r").keys() == {"traceparent"}

"""Bodies of the Inngest SDK protocol: the register request, call requests, memo
values, lifecycle events and seeded event ids."""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import math
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ulid import ULID

from offload.errors import ValidationError
from offload.models import RunError
from offload.protocol.canonical import canonical_json
from offload.protocol.function_config import (
    DEFAULT_RETRIES,
    MAX_RETRIES,
    FunctionConfig,
    Trigger,
    check_url,
    parse_function_config,
)
from offload.protocol.opcodes import normalize_error

__all__ = [
    "DEFAULT_RETRIES",
    "FUNCTION_CANCELLED_EVENT",
    "FUNCTION_FAILED_EVENT",
    "FUNCTION_FINISHED_EVENT",
    "FUNCTION_INVOKED_EVENT",
    "INVOKE_TIMEOUT_ERROR",
    "MAX_RETRIES",
    "MAX_SDK_REQUEST_BYTES",
    "MAX_SDK_RESPONSE_BYTES",
    "MAX_STEP_OUTPUT_BYTES",
    "SCHEDULED_TIMER_EVENT",
    "FunctionConfig",
    "RegisterRequest",
    "SyncedFunction",
    "Trigger",
    "build_call_request",
    "build_call_url",
    "correlation_id",
    "event_ids_from_seed",
    "function_cancelled_event",
    "function_failed_event",
    "function_finished_event",
    "invoke_event",
    "invoke_not_found_error",
    "memo_error",
    "memo_output",
    "parse_register_request",
    "scheduled_timer_event",
]

MAX_SDK_REQUEST_BYTES = 4 * 1024 * 1024
"""A call request bigger than this goes without events and steps, with ``use_api``: the
SDK fetches them from ``/v0/runs/{id}/batch`` and ``/actions`` (Inngest's threshold)."""
MAX_STEP_OUTPUT_BYTES = 4 * 1024 * 1024
"""The largest step output an SDK may report (Inngest's limit)."""
MAX_SDK_RESPONSE_BYTES = MAX_STEP_OUTPUT_BYTES + 256 * 1024
"""An SDK answer may carry one step output of the largest size plus its envelope."""

FUNCTION_INVOKED_EVENT = "inngest/function.invoked"
FUNCTION_FINISHED_EVENT = "inngest/function.finished"
FUNCTION_FAILED_EVENT = "inngest/function.failed"
FUNCTION_CANCELLED_EVENT = "inngest/function.cancelled"
SCHEDULED_TIMER_EVENT = "inngest/scheduled.timer"

def invoke_not_found_error(function_id: str) -> RunError:
    """The error a ``step.invoke`` of a function that is not synced fails with."""
    return RunError("Error", f"could not find function with ID: {function_id}")


INVOKE_TIMEOUT_ERROR = RunError("InngestInvokeTimeoutError",
                                 "Timed out waiting for invoked function to complete")
"""What a ``step.invoke`` whose child did not end in time fails with (copy before use)."""

# ---------------------------------------------------------------------------
# Register ("sync")
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncedFunction:
    """One function of a register request: its composite id (``<app>-<fn>``), name, config
    parsed (:class:`FunctionConfig`) and as sent (``raw``, what the store keeps)."""

    id: str
    name: str
    config: FunctionConfig
    raw: dict[str, Any] = field(compare=False, repr=False)


@dataclass(frozen=True)
class RegisterRequest:
    """A parsed ``POST /fn/register`` body; ``checksum`` is sha256 of its canonical JSON."""

    app_id: str
    url: str
    sdk: str | None
    framework: str | None
    app_version: str | None
    functions: list[SyncedFunction]
    deploy_type: str
    capabilities: dict[str, Any]
    checksum: str


def _pick(body: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in body and body[name] is not None:
            return body[name]
    return None


def _opt_str(body: Mapping[str, Any], *names: str) -> str | None:
    """The first present of ``names`` as a string; errors name the first spelling."""
    path = names[0]
    value = _pick(body, *names)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(path, "must be a string", "invalid_type")
    return value


def _parse_function(raw: Any, path: str) -> SyncedFunction:
    if not isinstance(raw, Mapping):
        raise ValidationError(path, "must be an object", "invalid_type")
    fn_id = raw.get("id")
    if not isinstance(fn_id, str) or not fn_id.strip():
        raise ValidationError(f"{path}.id", "is required", "required")
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        raise ValidationError(f"{path}.name", "must be a string", "invalid_type")
    return SyncedFunction(id=fn_id, name=name or fn_id,
                          config=parse_function_config(raw, path), raw=dict(raw))


def parse_register_request(body: Mapping[str, Any]) -> RegisterRequest:
    """Parse and validate a ``POST /fn/register`` body from either SDK.

    Accepts the JS spelling (``appName``, ``deployType``, ``appVersion``) and the
    Python one (``appname``, ``deploy_type``). Raises ``ValidationError`` whose
    ``field`` is a path such as ``functions[0].triggers``.
    """
    if not isinstance(body, Mapping):
        raise ValidationError("body", "must be a JSON object", "invalid_type")
    app_id = _pick(body, "appName", "appname", "app_name", "app_id")
    if not isinstance(app_id, str) or not app_id.strip():
        raise ValidationError("appName", "is required", "required")
    url = check_url(body.get("url"), "url")
    functions_raw = body.get("functions")
    if functions_raw is None:
        functions_raw = []
    if not isinstance(functions_raw, list):
        raise ValidationError("functions", "must be a list", "invalid_type")
    functions = [_parse_function(f, f"functions[{i}]") for i, f in enumerate(functions_raw)]
    seen: set[str] = set()
    for i, fn in enumerate(functions):
        if fn.id in seen:
            raise ValidationError(f"functions[{i}].id", f"duplicate id {fn.id!r}", "duplicate")
        seen.add(fn.id)
    capabilities = body.get("capabilities")
    if capabilities is not None and not isinstance(capabilities, Mapping):
        raise ValidationError("capabilities", "must be an object", "invalid_type")
    deploy_type = _opt_str(body, "deployType", "deploy_type") or "ping"
    return RegisterRequest(
        app_id=app_id,
        url=url,
        sdk=_opt_str(body, "sdk"),
        framework=_opt_str(body, "framework"),
        app_version=_opt_str(body, "appVersion", "app_version"),
        functions=functions,
        deploy_type=deploy_type,
        capabilities=dict(capabilities or {}),
        checksum=hashlib.sha256(canonical_json(dict(body))).hexdigest(),
    )


# ---------------------------------------------------------------------------
# Call requests
# ---------------------------------------------------------------------------


def _wire_event(event: Mapping[str, Any], path: str) -> dict[str, Any]:
    """Shape an event so Python's strict model accepts it (``ts`` int, ``id`` str, ``data`` obj)."""
    if not isinstance(event, Mapping):
        raise ValidationError(path, "must be an object", "invalid_type")
    name = event.get("name")
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{path}.name", "is required", "required")
    out = dict(event)
    data = out.get("data")
    if data is None:
        out["data"] = {}
    elif not isinstance(data, Mapping):
        raise ValidationError(f"{path}.data", "must be an object", "invalid_type")
    if out.get("id") is None:
        out.pop("id", None)
    elif not isinstance(out["id"], str):
        out["id"] = str(out["id"])
    ts = out.get("ts")
    if ts is None:
        out.pop("ts", None)
    elif isinstance(ts, float) and math.isfinite(ts):
        out["ts"] = int(ts)
    elif not isinstance(ts, int) or isinstance(ts, bool):
        raise ValidationError(f"{path}.ts", "must be epoch milliseconds", "invalid_type")
    if out.get("user") is None:
        out.pop("user", None)
    return out


def build_call_request(
    *,
    run_id: str,
    attempt: int,
    max_attempts: int,
    events: list[dict[str, Any]],
    steps: dict[str, Any],
    stack: list[str],
    disable_immediate_execution: bool,
    use_api: bool = False,
    step_id: str = "step",
    request_version: int = 2,
) -> dict[str, Any]:
    """The JSON body offload POSTs to an app to run (part of) a function.

    Satisfies the Python SDK's strict model (top-level ``use_api``,
    ``ctx.disable_immediate_execution``, int ``attempt``, ``ts`` ints) and the JS
    SDK (``ctx.stack.current``, ``version`` in -1/1/2). ``ctx.fn_id`` is left out
    on purpose: with it, JS v4 switches to checkpointing against endpoints offload
    does not serve. ``attempt`` is zero-based per step; ``max_attempts`` = retries
    + 1 lets Python report ``StepFailed`` on the last attempt. Serialise with
    :func:`canonical_json` and sign those exact bytes.
    """
    if not events:
        raise ValidationError("events", "needs at least one event", "required")
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise ValidationError("attempt", "must be a non-negative integer", "invalid")
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValidationError("max_attempts", "must be a positive integer", "invalid")
    if request_version not in (-1, 1, 2):
        raise ValidationError("request_version", "must be -1, 1 or 2", "invalid")
    wire_events = [_wire_event(e, f"events[{i}]") for i, e in enumerate(events)]
    return {
        "event": wire_events[0],
        "events": wire_events,
        "steps": dict(steps),
        "ctx": {
            "run_id": run_id,
            "attempt": attempt,
            "max_attempts": max_attempts,
            "disable_immediate_execution": disable_immediate_execution,
            "use_api": use_api,
            "step_id": step_id,
            "stack": {"stack": list(stack), "current": len(stack)},
        },
        "version": request_version,
        "use_api": use_api,
    }


def build_call_url(step_url: str, step_id: str) -> str:
    """``step_url`` with its ``stepId`` query parameter set to ``step_id`` (others kept)."""
    parts = urllib.parse.urlsplit(step_url)
    query = [
        (k, v)
        for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if k != "stepId"
    ]
    query.append(("stepId", step_id))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def memo_output(data: Any) -> dict[str, Any]:
    """The ``steps`` entry for a successful step: exactly ``{"data": value}``, even for null.

    No other key may sit beside ``data``: the JS SDK's memo schema is strict and
    would read ``{"data": .., "error": null}`` as a raw value.
    """
    return {"data": data}


def memo_error(error: Mapping[str, Any]) -> dict[str, Any]:
    """The ``steps`` entry for a step that failed for good: ``{"error": <the error>}``.

    The error the SDK sent is passed back whole (``code``, ``cause`` and any other
    field), so the SDK rebuilds the same error at that line. ``name`` and ``message``
    are always strings (otherwise Python would read the whole object as step
    *data*); a ``null`` ``stack`` is left out, at every level of ``cause``, because
    the JS SDK's error schema rejects it and would drop the whole error.
    """
    return {"error": _without_null_stacks(normalize_error(error))}


def _without_null_stacks(error: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in error.items() if not (k == "stack" and v is None)}
    cause = out.get("cause")
    if isinstance(cause, dict) and "name" in cause and "message" in cause:
        out["cause"] = _without_null_stacks(cause)
    return out


# ---------------------------------------------------------------------------
# Lifecycle events
# ---------------------------------------------------------------------------


def _ms(ts: datetime.datetime) -> int:
    if ts.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return int(ts.timestamp() * 1000)


def _rfc3339(ts: datetime.datetime) -> str:
    if ts.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return ts.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _event(
    name: str, data: dict[str, Any], ts: datetime.datetime, event_id: str | None
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "data": data, "ts": _ms(ts)}
    if event_id is not None:
        out["id"] = event_id
    return out


def correlation_id(run_id: str, step_id: str) -> str:
    """The invoke correlation id: ``<parent run id>.<hashed step id>``."""
    return f"{run_id}.{step_id}"


def invoke_event(
    *,
    function_id: str,
    data: Mapping[str, Any],
    parent_run_id: str,
    step_id: str,
    ts: datetime.datetime,
    display_name: str = "",
    user: Mapping[str, Any] | None = None,
    event_id: str | None = None,
    source_app_id: str = "",
    source_fn_id: str = "",
    expire: datetime.datetime | None = None,
) -> dict[str, Any]:
    """The ``inngest/function.invoked`` event that starts an invoked run.

    ``data`` is the invoke payload; ``data._inngest`` carries the target
    ``fn_id`` and the ``correlation_id`` that resumes the parent when it ends.
    """
    payload = dict(data)
    payload["_inngest"] = {
        "fn_id": function_id,
        "correlation_id": correlation_id(parent_run_id, step_id),
        "expire": _ms(expire) if expire is not None else 0,
        "gid": "",
        "name": display_name,
        "source_app_id": source_app_id,
        "source_fn_id": source_fn_id,
        "source_fn_v": 0,
    }
    out = _event(FUNCTION_INVOKED_EVENT, payload, ts, event_id)
    if user is not None:
        out["user"] = dict(user)
    return out


def _run_data(
    function_id: str,
    run_id: str,
    events: Sequence[Mapping[str, Any]],
    correlation: str | None,
    status: str,
) -> dict[str, Any]:
    evts = [dict(e) for e in events]
    data: dict[str, Any] = {
        "function_id": function_id,
        "run_id": run_id,
        "event": evts[0] if evts else {},
        "events": evts,
        "_inngest": {"status": status},
    }
    if correlation:
        data["correlation_id"] = correlation
    return data


_NO_RESULT: Any = object()


def function_finished_event(
    *,
    function_id: str,
    run_id: str,
    events: Sequence[Mapping[str, Any]],
    ts: datetime.datetime,
    result: Any = _NO_RESULT,
    error: Mapping[str, Any] | None = None,
    correlation_id: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """``inngest/function.finished``: emitted after every run, with ``result`` or ``error``."""
    status = "Failed" if error is not None else "Completed"
    data = _run_data(function_id, run_id, events, correlation_id, status)
    if error is not None:
        data["error"] = normalize_error(error)
    else:
        data["result"] = None if result is _NO_RESULT else result
    return _event(FUNCTION_FINISHED_EVENT, data, ts, event_id)


def function_failed_event(
    *,
    function_id: str,
    run_id: str,
    events: Sequence[Mapping[str, Any]],
    error: Mapping[str, Any],
    ts: datetime.datetime,
    correlation_id: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """``inngest/function.failed``: drives ``on_failure`` handlers (``data.error`` etc.)."""
    data = _run_data(function_id, run_id, events, correlation_id, "Failed")
    data["error"] = normalize_error(error)
    return _event(FUNCTION_FAILED_EVENT, data, ts, event_id)


def function_cancelled_event(
    *,
    function_id: str,
    run_id: str,
    events: Sequence[Mapping[str, Any]],
    ts: datetime.datetime,
    reason: str = "function cancelled",
    correlation_id: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """``inngest/function.cancelled``, with an error naming the cancellation."""
    data = _run_data(function_id, run_id, events, correlation_id, "Cancelled")
    data["error"] = RunError("FunctionCancelledError", reason)
    return _event(FUNCTION_CANCELLED_EVENT, data, ts, event_id)


def scheduled_timer_event(
    cron: str,
    fire_at: datetime.datetime,
    *,
    scheduled_at: datetime.datetime | None = None,
) -> dict[str, Any]:
    """``inngest/scheduled.timer`` for one cron tick; ``id`` is the RFC 3339 fire time."""
    fire = _rfc3339(fire_at)
    return {
        "name": SCHEDULED_TIMER_EVENT,
        "id": fire,
        "data": {
            "cron": cron,
            "fireAt": fire,
            "scheduledAt": _rfc3339(scheduled_at) if scheduled_at is not None else fire,
        },
        "ts": _ms(fire_at),
    }


# ---------------------------------------------------------------------------
# Seeded event ids
# ---------------------------------------------------------------------------

_MAX_ENTROPY = 1 << 80


def event_ids_from_seed(seed_header: str | None, count: int) -> list[str] | None:
    """Deterministic ULIDs from ``x-inngest-event-id-seed: <epoch_ms>,<base64 10 bytes>``.

    The i-th id has the seed's millisecond time and entropy + i (80-bit, wrapping),
    so a retried send gets the same ids. ``None`` when the header is absent or
    malformed.
    """
    if not seed_header or count < 0:
        return None
    millis_text, sep, entropy_text = seed_header.strip().partition(",")
    if not sep:
        return None
    try:
        millis = int(millis_text.strip())
        entropy = base64.b64decode(entropy_text.strip(), validate=True)
    except (ValueError, binascii.Error):
        return None
    if len(entropy) != 10 or not 0 <= millis < (1 << 48):
        return None
    base = int.from_bytes(entropy, "big")
    ids: list[str] = []
    for i in range(count):
        rand = ((base + i) % _MAX_ENTROPY).to_bytes(10, "big")
        ids.append(str(ULID.from_bytes(millis.to_bytes(6, "big") + rand)))
    return ids

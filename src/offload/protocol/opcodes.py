"""What an SDK answers to a call request: opcodes, generator ops and the parsed response."""

from __future__ import annotations

import datetime
import email.utils
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from offload.errors import ProtocolError, ValidationError
from offload.models import RunError
from offload.protocol.durations import parse_duration

__all__ = [
    "GeneratorOp",
    "InvokeSpec",
    "Opcode",
    "SdkResponse",
    "WaitForEventSpec",
    "invoke_spec",
    "normalize_error",
    "parse_generator_op",
    "parse_retry_after",
    "parse_sdk_response",
    "sleep_until",
    "wait_for_event_spec",
]


class Opcode(StrEnum):
    """Opcodes an SDK may report in a 206 body (wire spelling as values)."""

    NONE = "None"  # ``None`` is a Python keyword; the wire value is "None"
    Step = "Step"  # legacy spelling of StepRun
    StepRun = "StepRun"
    StepError = "StepError"
    StepFailed = "StepFailed"
    StepPlanned = "StepPlanned"
    StepNotFound = "StepNotFound"
    Sleep = "Sleep"
    WaitForEvent = "WaitForEvent"
    WaitForSignal = "WaitForSignal"
    InvokeFunction = "InvokeFunction"
    AIGateway = "AIGateway"
    Gateway = "Gateway"
    RunComplete = "RunComplete"
    SyncRunComplete = "SyncRunComplete"
    DiscoveryRequest = "DiscoveryRequest"
    DeferAdd = "DeferAdd"
    DeferAbort = "DeferAbort"


_OPCODES = {op.value: op for op in Opcode}


@dataclass(frozen=True)
class GeneratorOp:
    """One op of a 206 body.

    ``id`` is the hashed step id (opaque); ``name`` is overloaded (Sleep: the
    duration or ISO deadline; WaitForEvent: the event name); ``display_name`` and
    ``userland_id`` are the user's step id. ``has_data`` tells ``"data": null``
    from an absent ``data``. ``error`` is normalised by :func:`normalize_error`.
    """

    op: Opcode
    id: str
    name: str | None = None
    display_name: str | None = None
    data: Any = None
    has_data: bool = False
    error: dict[str, Any] | None = None
    opts: dict[str, Any] | None = None
    userland_id: str | None = None
    userland_index: int | None = None
    timing: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def step_name(self) -> str:
        """A human name for the step: display name, userland id, name, then id."""
        return self.display_name or self.userland_id or self.name or self.id

    @property
    def parallel_mode(self) -> str:
        """``"race"`` when the op asks for race mode, else ``"wait"``."""
        mode = (self.opts or {}).get("parallelMode")
        return "race" if mode == "race" else "wait"


@dataclass(frozen=True)
class SdkResponse:
    """A parsed SDK answer.

    ``kind`` is ``done`` (``output`` = function result), ``ops`` (``ops`` holds the
    206 ops) or ``error`` (``output`` = the normalised error ``{name, message,
    stack}``). ``status`` is the HTTP status (the inner one for 201); ``raw`` is the
    decoded body (or text) as received.
    """

    kind: Literal["done", "ops", "error"]
    ops: list[GeneratorOp] = field(default_factory=list)
    output: Any = None
    no_retry: bool = False
    retry_after: datetime.datetime | datetime.timedelta | None = None
    sdk: str | None = None
    request_version: int | None = None
    status: int = 0
    raw: Any = field(default=None, compare=False, repr=False)


def normalize_error(obj: Any, *, _depth: int = 0) -> dict[str, Any]:
    """The error object an SDK sent, whole, with ``name``, ``message`` and ``stack`` set.

    Every field the SDK sent is kept as it was (``code``, ``__serialized``, ``data``,
    a nested ``cause``, ...); only the three documented ones are made sure of:
    ``name`` and ``message`` are non-empty strings, ``stack`` a string or ``None``.
    A ``cause`` that looks like an error is normalised the same way (up to a depth of
    ten). Accepts the Python SDK shape (``name, message, stack, code``), the JS
    serialised-error shape, the Go-style ``{"error": "..."}``, a nested ``{"error":
    {...}}``, strings and anything else.
    """
    if isinstance(obj, Mapping):
        inner = obj.get("error")
        if isinstance(inner, Mapping) and "message" not in obj:
            return normalize_error(inner, _depth=_depth)
        name = obj.get("name")
        message = obj.get("message")
        if not isinstance(message, str) or not message:
            alt = obj.get("error")
            if isinstance(alt, str) and alt:
                message = alt
                obj = {k: v for k, v in obj.items() if k != "error"}
            elif message is None or message == "":
                message = _short_json(obj) if obj else "unknown error"
            else:
                message = _short_json(message)
        stack = obj.get("stack")
        extra = {str(k): v for k, v in obj.items()
                 if str(k) not in ("name", "message", "stack")}
        out = RunError(name if isinstance(name, str) and name else "Error", message,
                       stack=stack if isinstance(stack, str) and stack else None, **extra)
        cause = out.get("cause")
        if isinstance(cause, Mapping) and _depth < 10 and (
                "message" in cause or "name" in cause):
            out["cause"] = normalize_error(cause, _depth=_depth + 1)
        return out
    if isinstance(obj, str):
        return RunError("Error", obj or "unknown error")
    if obj is None:
        return RunError("Error", "unknown error")
    return RunError("Error", _short_json(obj))


def _short_json(value: Any, limit: int = 2000) -> str:
    try:
        text = json.dumps(value, default=str, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def parse_generator_op(item: Any, index: int = 0) -> GeneratorOp:
    """Parse one element of a 206 body; raise ``ProtocolError`` when it is not an op."""
    where = f"ops[{index}]"
    if not isinstance(item, Mapping):
        raise ProtocolError(f"{where}: an op must be a JSON object")
    raw_op = item.get("op")
    if not isinstance(raw_op, str):
        raise ProtocolError(f"{where}: missing 'op'")
    op = _OPCODES.get(raw_op)
    if op is None:
        raise ProtocolError(f"{where}: unknown opcode {raw_op!r}")
    op_id = item.get("id")
    if op_id is None and op in (Opcode.RunComplete, Opcode.SyncRunComplete, Opcode.NONE):
        op_id = ""
    if not isinstance(op_id, str):
        raise ProtocolError(f"{where}: missing step 'id'")
    name = item.get("name")
    display_name = item.get("displayName")
    opts = item.get("opts")
    error = item.get("error")
    timing = item.get("timing")
    userland = item.get("userland")
    userland_id: str | None = None
    userland_index: int | None = None
    if isinstance(userland, Mapping):
        uid = userland.get("id")
        uidx = userland.get("index")
        userland_id = uid if isinstance(uid, str) else None
        userland_index = uidx if isinstance(uidx, int) and not isinstance(uidx, bool) else None
    return GeneratorOp(
        op=op,
        id=op_id,
        name=name if isinstance(name, str) else None,
        display_name=display_name if isinstance(display_name, str) else None,
        data=item.get("data"),
        has_data="data" in item,
        error=normalize_error(error) if error is not None else None,
        opts=dict(opts) if isinstance(opts, Mapping) else None,
        userland_id=userland_id,
        userland_index=userland_index,
        timing=dict(timing) if isinstance(timing, Mapping) else None,
        raw=dict(item),
    )


_SECONDS = re.compile(r"[+-]?\d+(\.\d+)?")


def parse_retry_after(
    value: str | None,
) -> datetime.datetime | datetime.timedelta | None:
    """Parse ``Retry-After``: (decimal) seconds, an HTTP date or an RFC 3339 / ISO
    timestamp — for SDK answers and HTTP-task targets alike.

    Returns ``None`` for a missing or unparseable value; dates are UTC-aware. Negative
    seconds are kept as given: ``engine.attempts`` clamps every value to its range.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _SECONDS.fullmatch(text):
        return datetime.timedelta(seconds=float(text))
    parsed: datetime.datetime | None
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None:
        try:
            parsed = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if parsed is None:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.astimezone(datetime.UTC)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _decode(body: bytes) -> Any:
    text = body.decode("utf-8").strip()
    if not text:
        return None
    return json.loads(text)


def _is_op_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(i, Mapping) and i.get("op") in _OPCODES for i in value)
    )


def parse_sdk_response(status: int, headers: Mapping[str, str], body: bytes) -> SdkResponse:
    """Parse an SDK's answer to a call request.

    * 200: the function finished; ``output`` is the decoded body (``None`` if empty).
      A list of ops holding ``RunComplete`` is also ``done``.
    * 206: a list of ops (a bare object is a legacy single op). A lone
      ``RunComplete`` (JS checkpointing fallback) is ``done``.
    * 201: the streaming envelope ``<spaces>{"status", "headers", "body": "<json>"}``;
      it is unwrapped and parsed as the inner response.
    * other statuses: ``error``; ``output`` is the normalised error.

    Raises ``ProtocolError`` for a 2xx without ``X-Inngest-SDK`` (a proxy or the
    wrong server answered), malformed JSON in a 2xx, unknown opcodes, or other 2xx
    statuses.
    """
    sdk = _header(headers, "x-inngest-sdk")
    if status == 201:
        return _parse_stream(headers, body, sdk)
    no_retry = (_header(headers, "x-inngest-no-retry") or "").strip().lower() == "true"
    retry_after = parse_retry_after(_header(headers, "retry-after"))
    version_text = _header(headers, "x-inngest-req-version")
    request_version: int | None
    try:
        request_version = int(version_text) if version_text is not None else None
    except ValueError:
        request_version = None

    common: dict[str, Any] = {
        "status": status,
        "no_retry": no_retry,
        "retry_after": retry_after,
        "sdk": sdk,
        "request_version": request_version,
    }

    if 200 <= status < 300:
        if not sdk:
            raise ProtocolError(
                f"HTTP {status} without an X-Inngest-SDK header: not an Inngest SDK answer"
            )
        if status not in (200, 206):
            raise ProtocolError(f"unexpected HTTP {status} from the SDK")
        try:
            decoded = _decode(body)
        except (ValueError, UnicodeDecodeError) as err:
            raise ProtocolError(f"HTTP {status} body is not valid JSON: {err}") from err
        if status == 200:
            if _is_op_list(decoded):
                ops = [parse_generator_op(item, i) for i, item in enumerate(decoded)]
                done = [op for op in ops if op.op in (Opcode.RunComplete, Opcode.SyncRunComplete)]
                if done:
                    return SdkResponse(kind="done", output=done[0].data, raw=decoded, **common)
            return SdkResponse(kind="done", output=decoded, raw=decoded, **common)
        if isinstance(decoded, Mapping):
            decoded = [decoded]
        if not isinstance(decoded, list):
            raise ProtocolError("HTTP 206 body must be a JSON array of ops")
        if not decoded:
            raise ProtocolError("HTTP 206 body holds no ops")
        ops = [parse_generator_op(item, i) for i, item in enumerate(decoded)]
        if len(ops) == 1 and ops[0].op in (Opcode.RunComplete, Opcode.SyncRunComplete):
            return SdkResponse(kind="done", output=ops[0].data, raw=decoded, **common)
        return SdkResponse(kind="ops", ops=ops, raw=decoded, **common)

    try:
        decoded = _decode(body)
    except (ValueError, UnicodeDecodeError):
        text = body.decode("utf-8", errors="replace").strip()
        snippet = text[:500] + ("…" if len(text) > 500 else "")
        error: dict[str, Any] = RunError("Error", f"HTTP {status}: {snippet}")
        return SdkResponse(kind="error", output=error, raw=text, **common)
    if decoded is None:
        error = RunError("Error", f"HTTP {status} with an empty body")
    else:
        error = normalize_error(decoded)
    return SdkResponse(kind="error", output=error, raw=decoded, **common)


def _parse_stream(headers: Mapping[str, str], body: bytes, sdk: str | None) -> SdkResponse:
    try:
        envelope = _decode(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise ProtocolError(f"streamed response is not valid JSON: {err}") from err
    if not isinstance(envelope, Mapping):
        raise ProtocolError("streamed response is not an envelope object")
    inner_status = envelope.get("status")
    if not isinstance(inner_status, int) or isinstance(inner_status, bool) or inner_status == 201:
        raise ProtocolError("streamed response has no valid 'status'")
    inner_headers: dict[str, str] = {k.lower(): v for k, v in headers.items()}
    env_headers = envelope.get("headers")
    if isinstance(env_headers, Mapping):
        for key, value in env_headers.items():
            if isinstance(key, str) and value is not None:
                inner_headers[key.lower()] = str(value)
    inner_body = envelope.get("body")
    if isinstance(inner_body, str):
        raw_body = inner_body.encode("utf-8")
    elif inner_body is None:
        raw_body = b""
    else:
        raw_body = json.dumps(inner_body).encode("utf-8")
    if sdk and "x-inngest-sdk" not in inner_headers:
        inner_headers["x-inngest-sdk"] = sdk
    return parse_sdk_response(inner_status, inner_headers, raw_body)


# --- helpers the executor uses to read op options -------------------------------------


def sleep_until(op: GeneratorOp, now: datetime.datetime) -> datetime.datetime:
    """The deadline of a ``Sleep`` op.

    ``name`` holds either an ISO-8601 time (Python SDK; JS ``sleepUntil``) or a
    time string (JS ``sleep``); ``opts.duration`` is the fallback. Raises
    ``ProtocolError`` when neither parses.
    """
    candidates = [op.name, (op.opts or {}).get("duration")]
    for value in candidates:
        if not isinstance(value, str) or not value:
            continue
        try:
            return now + parse_duration(value)
        except ValidationError:
            pass
        try:
            parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            continue
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.UTC)
        return parsed.astimezone(datetime.UTC)
    raise ProtocolError(f"Sleep op {op.id}: no duration or deadline")


@dataclass(frozen=True)
class WaitForEventSpec:
    """What a ``WaitForEvent`` op waits for."""

    event: str
    timeout: datetime.timedelta
    expression: str | None


def wait_for_event_spec(op: GeneratorOp) -> WaitForEventSpec:
    """Read a ``WaitForEvent`` op: event name (``name``, else ``opts.event``), timeout, ``if``."""
    opts = op.opts or {}
    event = op.name if op.name else opts.get("event")
    if not isinstance(event, str) or not event:
        raise ProtocolError(f"WaitForEvent op {op.id}: no event name")
    timeout_text = opts.get("timeout")
    if not isinstance(timeout_text, str):
        raise ProtocolError(f"WaitForEvent op {op.id}: no timeout")
    try:
        timeout = parse_duration(timeout_text)
    except ValidationError as err:
        raise ProtocolError(f"WaitForEvent op {op.id}: bad timeout {timeout_text!r}") from err
    expression = opts.get("if")
    return WaitForEventSpec(
        event=event,
        timeout=timeout,
        expression=expression if isinstance(expression, str) and expression else None,
    )


@dataclass(frozen=True)
class InvokeSpec:
    """What an ``InvokeFunction`` op asks for."""

    function_id: str
    data: dict[str, Any]
    user: dict[str, Any] | None
    timeout: datetime.timedelta | None


def invoke_spec(op: GeneratorOp) -> InvokeSpec:
    """Read an ``InvokeFunction`` op: ``opts.function_id``, ``.payload.data``, ``.timeout``."""
    opts = op.opts or {}
    function_id = opts.get("function_id")
    if not isinstance(function_id, str) or not function_id:
        raise ProtocolError(f"InvokeFunction op {op.id}: no function_id")
    payload = opts.get("payload")
    payload = payload if isinstance(payload, Mapping) else {}
    data = payload.get("data")
    user = payload.get("user")
    timeout_text = opts.get("timeout")
    timeout: datetime.timedelta | None = None
    if isinstance(timeout_text, str) and timeout_text:
        try:
            timeout = parse_duration(timeout_text)
        except ValidationError as err:
            raise ProtocolError(f"InvokeFunction op {op.id}: bad timeout") from err
    return InvokeSpec(
        function_id=function_id,
        data=dict(data) if isinstance(data, Mapping) else {},
        user=dict(user) if isinstance(user, Mapping) else None,
        timeout=timeout,
    )

"""The SDK-facing routes of the Inngest protocol, at the root of the host.

* ``POST /fn/register``: an app syncs its functions (both SDKs' spellings);
* ``POST /e/{event_key}``: apps send events (one object or a list);
* ``GET /v0/runs/{id}/batch`` and ``/actions``: a run's events and memoized steps,
  for SDKs told to fetch them (``use_api``).

Outside ``offload dev`` a register call must carry the signing key (``Authorization:
Bearer <hashed key>``) and events need one of the configured event keys. Answers use
the bodies the SDKs parse (``{"ok", "modified"}``, ``{"ids", "status"}``), not the
``/v1`` problem shape.
"""

from __future__ import annotations

import hmac
import re
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from offload.api.identifiers import check_identifier
from offload.clock import now, now_ms
from offload.errors import ValidationError
from offload.ids import new_id
from offload.models import App, Function
from offload.outbound.tracing import parse_traceparent
from offload.protocol.messages import event_ids_from_seed, parse_register_request
from offload.protocol.runs import memos_and_stack, server_kind
from offload.protocol.signing import bearer_matches
from offload.store.base import Change, NewEvent

router = APIRouter(tags=["sdk"], include_in_schema=True)

MAX_EVENTS = 1000
_JS_SDK = re.compile(r"^(?:inngest-)?js:v?(\d+)\.(\d+)\.(\d+)")
_BLOCKED_JS = ((3, 22, 0), (3, 53, 1))
"""JS SDK versions with a known vulnerability (the range Inngest refuses to sync)."""


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _blocked_sdk(sdk: str | None) -> bool:
    match = _JS_SDK.match(sdk or "")
    if not match:
        return False
    version = tuple(int(g) for g in match.groups())
    return _BLOCKED_JS[0] <= version <= _BLOCKED_JS[1]


def _signing_auth_ok(request: Request) -> str | None:
    """None if the caller may use SDK routes, else why not."""
    settings = request.app.state.engine.settings
    if settings.dev:
        return None  # dev mode: apps run unsigned (the JS SDK even sends "Bearer undefined")
    keys = settings.signing_keys()
    if not keys:
        if settings.insecure:
            return None
        return "offload has no signing key configured (OFFLOAD_SIGNING_KEY)"
    if not bearer_matches(request.headers.get("authorization"), keys):
        return "the Authorization header does not carry this server's signing key"
    return None


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError as exc:
        raise ValidationError("body", f"is not valid JSON: {exc}", "json_invalid") from None


@router.post("/fn/register")
async def register(request: Request) -> JSONResponse:
    """Sync an app: replace its function set atomically (a no-op when unchanged)."""
    engine = request.app.state.engine
    kind = server_kind(engine.settings)
    expected = request.headers.get("x-inngest-expected-server-kind")
    if expected and expected != kind:
        return _error(400, f"this server is a {kind!r} server but the app expects "
                           f"{expected!r}: set INNGEST_DEV for a dev server, or give both "
                           "the same signing key", code="server_kind_mismatch")
    problem = _signing_auth_ok(request)
    if problem is not None:
        return _error(401, problem, code="unauthorized")
    try:
        body = await _json_body(request)
        parsed = parse_register_request(body)  # each function's config parsed, once
    except ValidationError as exc:
        return _error(400, f"{exc.field}: {exc.message}", code=exc.code)
    sdk = parsed.sdk or request.headers.get("x-inngest-sdk")
    if _blocked_sdk(sdk):
        return _error(400, f"SDK {sdk} has a known vulnerability; upgrade the inngest "
                           "package to 3.54 or later", code="blocked_sdk")
    at = now()
    app = App(id=parsed.app_id, url=parsed.url, sdk=sdk, framework=parsed.framework,
              app_version=parsed.app_version, checksum=parsed.checksum, sync_error=None,
              synced_at=at, created_at=at, updated_at=at)
    functions = [Function(id=f.id, app_id=parsed.app_id, name=f.name, config=dict(f.raw),
                          spec=f.config, created_at=at, updated_at=at)
                 for f in parsed.functions]
    modified = await engine.store.app_sync(app=app, functions=functions)
    if engine.functions is not None:
        engine.functions.invalidate()
    return JSONResponse({"ok": True, "modified": modified, "app_id": parsed.app_id,
                         "sync_id": new_id()})


def _event_key_ok(request: Request, event_key: str) -> bool:
    settings = request.app.state.engine.settings
    if settings.dev:
        return True
    return any(hmac.compare_digest(event_key.encode(), k.encode())
               for k in settings.event_keys)


_EVENT_FIELDS = frozenset({"name", "data", "id", "ts", "user", "correlation_id"})


def parse_events(body: Any) -> list[NewEvent]:
    """Events from a ``/e/`` or ``/v1/events`` body; raise ValidationError naming the field."""
    items = body if isinstance(body, list) else [body]
    if not items:
        raise ValidationError("body", "holds no events", "empty")
    if len(items) > MAX_EVENTS:
        raise ValidationError("body", f"holds more than {MAX_EVENTS} events", "too_many")
    at = now()
    out: list[NewEvent] = []
    for i, raw in enumerate(items):
        path = f"[{i}]" if isinstance(body, list) else "body"
        if not isinstance(raw, dict):
            raise ValidationError(path, "an event must be a JSON object", "invalid_type")
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValidationError(f"{path}.name", "is required", "required")
        if len(name) > 256:
            raise ValidationError(f"{path}.name", "is longer than 256 characters", "too_long")
        check_identifier(f"{path}.name", name)
        data = raw.get("data")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ValidationError(f"{path}.data", "must be a JSON object", "invalid_type")
        external = raw.get("id")
        if external is not None and not isinstance(external, str):
            raise ValidationError(f"{path}.id", "must be a string", "invalid_type")
        check_identifier(f"{path}.id", external)
        ts = raw.get("ts")
        if ts is None or ts == 0:
            ts = now_ms()
        elif isinstance(ts, float) and ts.is_integer():
            ts = int(ts)
        if not isinstance(ts, int) or isinstance(ts, bool):
            raise ValidationError(f"{path}.ts", "must be epoch milliseconds", "invalid_type")
        user = raw.get("user")
        if user is not None and not isinstance(user, dict):
            raise ValidationError(f"{path}.user", "must be a JSON object", "invalid_type")
        corr = raw.get("correlation_id")
        if corr is not None and (not isinstance(corr, str) or not 0 < len(corr) <= 255):
            raise ValidationError(f"{path}.correlation_id", "must be a string of 1 to 255 "
                                  "characters", "invalid_type")
        version = raw.get("v")
        if version is not None and not isinstance(version, str):
            raise ValidationError(f"{path}.v", "must be a string", "invalid_type")
        extra = {k: v for k, v in raw.items() if k not in _EVENT_FIELDS and v is not None}
        out.append(NewEvent(id=new_id(), name=name, data=data, ts=ts, received_at=at,
                            user=user or None, external_id=external or None,
                            correlation_id=corr, extra=extra or None))
    return out


async def store_events(request: Request, events: list[NewEvent],
                       seed: str | None = None) -> list[str]:
    """Store events (fan-out queued in the same commit); their ids, repeats deduplicated.

    A seeded retry of the same send gets the same ids and stores nothing twice.
    """
    store = request.app.state.engine.store
    parent = parse_traceparent(request.headers.get("traceparent"))
    if parent is not None:  # the runs these events start continue the sender's trace
        for event in events:
            event.traceparent = parent
    seeded = event_ids_from_seed(seed, len(events))
    if seeded is not None:
        for event, event_id in zip(events, seeded, strict=True):
            event.id = event_id
        existing = {e.id for e in await store.event_get_many(event_ids=seeded)}
        events = [e for e in events if e.id not in existing]
        if not events:
            return seeded
    result = await store.apply(Change(events=events))
    by_new_id = {new.id: stored.id for new, (stored, _) in zip(events, result.events,
                                                                 strict=True)}
    if seeded is not None:
        return [by_new_id.get(i, i) for i in seeded]
    return [stored.id for stored, _ in result.events]


@router.post("/e/{event_key}")
async def send_events(event_key: str, request: Request) -> JSONResponse:
    """Accept events from an SDK: ``200 {"ids": [...], "status": 200}``."""
    if not _event_key_ok(request, event_key):
        return JSONResponse({"ids": [], "status": 401, "error": "unknown event key"},
                            status_code=401)
    try:
        events = parse_events(await _json_body(request))
    except ValidationError as exc:
        return JSONResponse({"ids": [], "status": 400,
                             "error": f"{exc.field}: {exc.message}"}, status_code=400)
    ids = await store_events(request, events, request.headers.get("x-inngest-event-id-seed"))
    return JSONResponse({"ids": ids, "status": 200})


async def _run_for_sdk(request: Request, run_id: str) -> Any:
    problem = _signing_auth_ok(request)
    if problem is not None:
        return _error(401, problem)
    run = await request.app.state.engine.store.run_get(run_id=run_id, with_steps=True)
    if run is None:
        return _error(404, f"no run with id {run_id[:64]!r}")
    return run


@router.get("/v0/runs/{run_id}/batch")
async def run_batch(run_id: str, request: Request) -> Any:
    """The events of a run, as the SDK receives them in a call request."""
    run = await _run_for_sdk(request, run_id)
    if isinstance(run, JSONResponse):
        return run
    events = await request.app.state.engine.store.event_get_many(event_ids=run.event_ids)
    return JSONResponse([e.as_payload() for e in events])


@router.get("/v0/runs/{run_id}/actions")
async def run_actions(run_id: str, request: Request) -> Any:
    """The memoized steps of a run, shaped like a call request's ``steps``."""
    run = await _run_for_sdk(request, run_id)
    if isinstance(run, JSONResponse):
        return run
    memos, _ = memos_and_stack(run.steps or [])
    return JSONResponse(memos)


@router.get("/health")
async def health() -> dict[str, Any]:
    """Liveness for SDK tooling (``/healthz`` and ``/readyz`` are the real probes)."""
    return {"status": 200, "message": "OK"}

"""``/v1/webhooks`` (manage, admin) and ``POST /w/{id}`` (receive; the signature is the
credential): provider webhooks verified, acknowledged after one write, continued
durably.

A verified delivery is recorded (raw body, audit headers, the provider's delivery
id) together with the event it becomes and, with ``forward``, an HTTP task to the
app, in one transaction; a redelivery of the same delivery id answers ``200`` and
writes nothing. A refused delivery (bad or stale signature) answers ``401`` and writes
nothing; this process remembers the latest refusals per webhook for the dashboard.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets as random
import time
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator
from starlette.responses import JSONResponse, Response

from offload.api.auth import require
from offload.api.problems import problem, problem_responses
from offload.api.v1.tasks import TaskIn
from offload.clock import now
from offload.errors import ConflictError, NotFoundError, SignatureError, ValidationError
from offload.ids import new_id
from offload.inbound import Refused
from offload.inbound import verify as inbound_verify
from offload.inbound.events import default_template, event_name, parse_body, template_problem
from offload.inbound.testing import sample_body, signed_headers
from offload.inbound.verify import audit_headers
from offload.models import Webhook, WebhookDelivery
from offload.outbound.tracing import parse_traceparent
from offload.outbound.webhooks import generate_secret, sign_headers
from offload.security.redact import redact_headers
from offload.store.base import Change, NewEvent, NewRun

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"],
                   dependencies=[Depends(require("admin"))],
                   responses=problem_responses(401, 403, 404, 409, 422, 503))
receive_router = APIRouter(tags=["webhooks"])

DEFAULT_OVERLAP = timedelta(hours=24)
"""How long a rotated-out secret is still accepted unless the rotation says otherwise."""
CACHE_S = 1.0
"""Webhooks are read on the receive path at most once a second per process."""
REFUSALS_KEPT = 50
_HEADER = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$"
_HeaderName = Annotated[StrictStr, Field(pattern=_HEADER)]
_SECRET_KINDS = ("stripe", "github", "standard", "hmac", "token")
_PRINTABLE = re.compile(r"^[\x20-\x7e]{1,256}$")


# -- request bodies ------------------------------------------------------------------------

class VerifyIn(BaseModel):
    """How deliveries prove they come from the provider."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["stripe", "github", "standard", "hmac", "token", "none"] = Field(
        description="stripe (Stripe-Signature), github (X-Hub-Signature-256), standard "
        "(Standard Webhooks), hmac (a digest of the body in a header you name), token (a "
        "shared secret in a header: the weakest), none (no check: only behind your own "
        "gateway).")
    secret: Annotated[StrictStr, Field(min_length=1, max_length=1024)] | None = Field(
        None, description="The signing secret. Stripe: the endpoint's whsec_… secret (required). "
        "Omitted for the other kinds, one is generated and shown once.")
    tolerance: Annotated[StrictInt, Field(ge=1, le=3600)] | None = Field(
        None, description="stripe: seconds a signature's timestamp may be off (default 300).")
    header: _HeaderName | None = Field(
        None, description="hmac: the signature header (required); token: the header holding "
        "the token (default Authorization: Bearer).")
    algorithm: Literal["sha256", "sha1", "sha512"] | None = Field(None, description="hmac.")
    encoding: Literal["hex", "base64"] | None = Field(None, description="hmac.")
    prefix: Annotated[StrictStr, Field(max_length=32)] | None = Field(
        None, description='hmac: text before the digest, e.g. "sha256=".')
    id_header: _HeaderName | None = Field(
        None, description="hmac, token, none: the header holding the sender's delivery id "
        "(redeliveries are deduplicated by it).")
    keep_headers: Annotated[list[_HeaderName], Field(max_length=20)] | None = Field(
        None, description="More request headers kept with each delivery for audit "
        "(credentials never are).")

    def options(self) -> dict[str, Any]:
        """What is stored (and shown): everything but the secret."""
        return self.model_dump(exclude={"secret"}, exclude_none=True)

    def check(self, where: str) -> None:
        """Raise ValidationError for options that do not fit the kind."""
        per_kind = {"stripe": {"tolerance"}, "github": set(), "standard": set(),
                    "hmac": {"header", "algorithm", "encoding", "prefix", "id_header",
                             "keep_headers"},
                    "token": {"header", "id_header", "keep_headers"},
                    "none": {"id_header", "keep_headers"}}
        allowed = per_kind[self.kind] | {"kind", "secret", "keep_headers"}
        for name in self.model_fields_set:
            if name not in allowed and getattr(self, name) is not None:
                raise ValidationError(f"{where}.{name}", f"does not apply to kind "
                                      f"{self.kind!r}", "not_applicable")
        if self.kind == "hmac" and not self.header:
            raise ValidationError(f"{where}.header", "is required for kind 'hmac'", "missing")
        if self.kind == "stripe" and not self.secret:
            raise ValidationError(f"{where}.secret", "is required for kind 'stripe' (the "
                                  "endpoint's whsec_… signing secret from Stripe)", "missing")
        if self.kind == "none" and self.secret:
            raise ValidationError(f"{where}.secret", "kind 'none' has no secret",
                                  "not_applicable")
        if self.kind == "standard" and self.secret:
            try:
                sign_headers(self.secret, msg_id="check", body=b"", timestamp=now())
                if len(base64.b64decode(self.secret.removeprefix("whsec_") + "==")) < 16:
                    raise ValueError
            except (SignatureError, ValueError, binascii.Error):
                raise ValidationError(f"{where}.secret", "must be whsec_ followed by base64 "
                                      "of at least 16 bytes", "invalid_secret") from None


def _template(value: str | None) -> str | None:
    if value is not None and (why := template_problem(value)):
        raise ValueError(why)
    return value


def _forward(value: TaskIn | None) -> TaskIn | None:
    if value is None:
        return None
    if "body" in value.model_fields_set:
        raise ValueError("forward has no body: the delivery's body is sent")
    if value.method == "GET":
        raise ValueError("forward cannot be a GET: the delivery's body is sent")
    if value.idempotency_key is not None:
        raise ValueError("forward has no idempotency_key: deliveries are deduplicated by "
                         "the provider's delivery id")
    return value


_Event = Annotated[StrictStr, Field(min_length=1, max_length=256, description=(
    'Event name template: "{{ path }}" is a field of the JSON body ("stripe/{{ type }}"), '
    '"{{ headers.x-github-event }}" a request header, "{{ webhook.name }}" this webhook.'))]


class WebhookIn(BaseModel):
    """A new webhook."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    verify: VerifyIn
    event: _Event | None = Field(None, description="Default: stripe/{{ type }}, "
                                 "github/{{ headers.x-github-event }}, else "
                                 "webhook/{{ webhook.name }}.")
    forward: TaskIn | None = Field(
        None, description="HTTP task fields (url, headers, retries, queue, flow control…): "
        "each delivery is also sent there, with its body, as a task.")

    _check_event = field_validator("event")(_template)
    _check_forward = field_validator("forward")(_forward)


class WebhookPatch(BaseModel):
    """Fields to change; a new ``verify`` without ``secret`` keeps the current secret."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[StrictStr, Field(min_length=1, max_length=128)] | None = None
    verify: VerifyIn | None = None
    event: _Event | None = None
    forward: TaskIn | None = Field(None, description="null removes forwarding.")

    _check_event = field_validator("event")(_template)
    _check_forward = field_validator("forward")(_forward)


class RotateIn(BaseModel):
    """A new secret; the old one stays valid for ``overlap`` seconds."""

    model_config = ConfigDict(extra="forbid")

    secret: Annotated[StrictStr, Field(min_length=1, max_length=1024)] | None = Field(
        None, description="The new secret (Stripe: required, from Stripe); else generated.")
    overlap: Annotated[StrictInt, Field(ge=0, le=7 * 86400)] = Field(
        int(DEFAULT_OVERLAP.total_seconds()),
        description="Seconds the previous secret is still accepted (default one day).")


# -- shapes --------------------------------------------------------------------------------

def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def webhook_json(webhook: Webhook) -> dict[str, Any]:
    """A webhook as the API shows it: never its secret."""
    at = now()
    rotating = webhook.previous_secret is not None and webhook.previous_until is not None \
        and webhook.previous_until > at
    forward = webhook.forward
    if forward is not None and isinstance(forward.get("headers"), dict):
        forward = {**forward, "headers": redact_headers(forward["headers"])}
    return {"id": webhook.id, "name": webhook.name, "url": f"/w/{webhook.id}",
            "verify": webhook.verify, "has_secret": webhook.secret is not None,
            "previous_secret_until": _iso(webhook.previous_until) if rotating else None,
            "event": webhook.event, "forward": forward,
            "created_at": _iso(webhook.created_at), "updated_at": _iso(webhook.updated_at)}


def delivery_json(delivery: WebhookDelivery) -> dict[str, Any]:
    """A delivery as the API shows it (the body as text, or base64 when it is not UTF-8)."""
    try:
        body: Any = delivery.body.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        body, encoding = base64.b64encode(delivery.body).decode(), "base64"
    return {"id": delivery.id, "webhook_id": delivery.webhook_id,
            "delivery_id": delivery.delivery_id, "event_id": delivery.event_id,
            "event_name": delivery.event_name, "forward_run_id": delivery.run_id,
            "headers": delivery.headers, "body": body, "body_encoding": encoding,
            "received_at": _iso(delivery.received_at)}


# -- receiving -----------------------------------------------------------------------------

@dataclass(slots=True)
class _Entry:
    webhook: Webhook | None
    secrets: list[str]
    expires: float
    forward: TaskIn | None = None
    """The forward task validated once; each delivery copies it with its body."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A delivery this process refused: when and why (never the request itself)."""

    at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What receiving one request came to."""

    status: int
    reason: str | None = None
    delivery: WebhookDelivery | None = None
    duplicate: bool = False


@dataclass
class Receiver:
    """Verifies and records deliveries for one engine (cached webhooks, recent refusals)."""

    engine: Any
    _cache: dict[str, _Entry] = field(default_factory=dict)
    refusals: dict[str, deque[Refusal]] = field(default_factory=dict)

    def invalidate(self, webhook_id: str) -> None:
        """Forget a cached webhook (after a change made through this process)."""
        self._cache.pop(webhook_id, None)

    async def _entry(self, webhook_id: str) -> _Entry:
        entry = self._cache.get(webhook_id)
        if entry is not None and entry.expires > time.monotonic():
            return entry
        webhook = await self.engine.store.webhook_get(webhook_id=webhook_id)
        keys: list[str] = []
        if webhook is not None:
            vault = self.engine.vault
            if webhook.secret is not None:
                keys.append(vault.open(webhook.id, webhook.secret))
            if webhook.previous_secret is not None and webhook.previous_until is not None \
                    and webhook.previous_until > now():
                keys.append(vault.open(webhook.id, webhook.previous_secret))
        if len(self._cache) > 10_000:
            self._cache.clear()
        entry = _Entry(webhook, keys, time.monotonic() + CACHE_S)
        if webhook is not None and webhook.forward is not None:
            entry.forward = TaskIn.model_validate(webhook.forward)
        if webhook is not None and webhook.previous_until is not None:
            # Re-read when the overlap ends, so the old secret stops working on time.
            left = (webhook.previous_until - now()).total_seconds()
            if 0 < left < CACHE_S:
                entry.expires = time.monotonic() + left
        self._cache[webhook_id] = entry
        return entry

    async def _consumed(self, name: str) -> bool:
        """False when no synced function triggers or cancels on ``name``: the event then
        needs no fan-out item unless a run waits for it (the store checks that in the
        same transaction). Saves the fan-out's reads and writes for events that only
        feed ``forward`` tasks or are kept for audit."""
        catalog = getattr(self.engine, "functions", None)
        if catalog is None:
            return True
        for fn in await catalog.all():
            wanted = [t.event for t in fn.spec.triggers] + [c.event for c in fn.spec.cancel]
            if any(w == name or (w is not None and "*" in w) for w in wanted):
                return True
        return False

    def _refuse(self, webhook_id: str, reason: str) -> Outcome:
        kept = self.refusals.setdefault(webhook_id, deque(maxlen=REFUSALS_KEPT))
        kept.appendleft(Refusal(now(), reason))
        if len(self.refusals) > 10_000:
            self.refusals.clear()
        return Outcome(401, reason)

    async def receive(self, webhook_id: str, headers: dict[str, str], body: bytes) -> Outcome:
        """Verify, then record the delivery, its event and forward run in one write."""
        entry = await self._entry(webhook_id)
        webhook = entry.webhook
        if webhook is None:
            return Outcome(404, "no such webhook")
        at = now()
        options = webhook.verify
        kind = str(options.get("kind"))
        try:
            verified = inbound_verify(kind, options, entry.secrets, headers, body,
                                      now=at.timestamp())
        except Refused as exc:
            return self._refuse(webhook.id, exc.reason)
        delivery_id = verified.delivery_id or new_id()
        data = parse_body(body, headers.get("content-type"))
        name = event_name(webhook.event, data, headers, {"id": webhook.id, "name": webhook.name})
        parent = parse_traceparent(headers.get("traceparent"))
        event = NewEvent(id=new_id(), name=name, data=data, ts=int(at.timestamp() * 1000),
                         received_at=at, correlation_id=verified.delivery_id,
                         traceparent=parent, fanout=await self._consumed(name))
        runs = [] if entry.forward is None else [
            self._forward_run(webhook, entry.forward, event, body, headers, at)]
        delivery = WebhookDelivery(
            id=new_id(), webhook_id=webhook.id, delivery_id=delivery_id[:255],
            headers=audit_headers(kind, options, headers), body=body, received_at=at,
            event_id=event.id, event_name=name, run_id=runs[0].id if runs else None)
        stored, created = await self.engine.store.webhook_deliver(
            delivery=delivery, change=Change(events=[event], runs=runs))
        return Outcome(200, None, stored, duplicate=not created)

    @staticmethod
    def _forward_run(webhook: Webhook, forward: TaskIn, event: NewEvent, body: bytes,
                     headers: dict[str, str], at: datetime) -> NewRun:
        out_headers = dict(forward.headers)
        kind = headers.get("content-type") or "application/json"
        out_headers["Content-Type"] = kind if _PRINTABLE.match(kind) else "application/json"
        out_headers["X-Offload-Webhook"] = webhook.id
        out_headers["X-Offload-Event"] = event.name.encode("ascii", "replace").decode()
        # The headers added are valid by construction and the body is text: no revalidation.
        task = forward.model_copy(update={"headers": out_headers,
                                          "body": body.decode("utf-8", "replace")})
        run = task.new_run(at)
        run.event_ids = [event.id]
        run.correlation_id = event.correlation_id
        if event.traceparent:
            run.state = {**run.state, "traceparent": event.traceparent}
        return run


def receiver(engine: Any) -> Receiver:
    """The engine's receiver (made on first use)."""
    found = getattr(engine, "_webhook_receiver", None)
    if found is None:
        found = Receiver(engine)
        engine._webhook_receiver = found
    return found


@receive_router.post("/w/{webhook_id}", responses={
    200: {"description": "Accepted (or a redelivery of an accepted delivery)"},
    401: {"description": "Signature missing, malformed, stale or wrong; nothing written"},
    404: {"description": "No such webhook"}})
async def receive(webhook_id: str, request: Request) -> Response:
    """Receive a provider's delivery. No API key: the signature is the credential."""
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    outcome = await receiver(request.app.state.engine).receive(webhook_id[:64], headers, body)
    if outcome.status == 404:
        return problem(404, "not_found", f"no webhook with id {webhook_id[:64]!r}")
    if outcome.status == 401:
        return problem(401, "signature_refused", outcome.reason or "refused")
    assert outcome.delivery is not None
    return Response(orjson.dumps({
        "ok": True, "duplicate": outcome.duplicate, "delivery_id": outcome.delivery.delivery_id,
        "event_id": outcome.delivery.event_id}), media_type="application/json")


# -- managing ------------------------------------------------------------------------------

def _new_secret(kind: str) -> str:
    return generate_secret() if kind == "standard" else "whsec_" + random.token_urlsafe(32)


async def _get(request: Request, webhook_id: str) -> Webhook:
    webhook: Webhook | None = await request.app.state.engine.store.webhook_get(
        webhook_id=webhook_id)
    if webhook is None:
        raise NotFoundError(f"no webhook with id {webhook_id[:64]!r}")
    return webhook


def _need_key(request: Request) -> Any:
    vault = request.app.state.engine.vault
    if vault.box is None:
        raise ConflictError("no secrets key is configured: set OFFLOAD_SECRETS_KEY (webhook "
                            "secrets are stored encrypted)")
    return vault


@router.post("", status_code=201)
async def create_webhook(body: WebhookIn, request: Request) -> JSONResponse:
    """Create a webhook; its URL is ``/w/{id}``. A generated secret is shown only here."""
    body.verify.check("body.verify")
    kind = body.verify.kind
    secret = body.verify.secret
    generated = secret is None and kind in _SECRET_KINDS
    if generated:
        secret = _new_secret(kind)
    webhook_id = new_id()
    sealed = _need_key(request).seal(webhook_id, secret) if secret else None
    at = now()
    webhook = Webhook(
        id=webhook_id, name=body.name, verify=body.verify.options(),
        event=body.event or default_template(kind),
        forward=body.forward.model_dump(exclude_unset=True) if body.forward else None,
        created_at=at, updated_at=at, secret=sealed)
    await request.app.state.engine.store.webhook_insert(webhook=webhook)
    out = webhook_json(webhook)
    if generated:
        out["secret"] = secret
    return JSONResponse(out, status_code=201)


@router.get("")
async def list_webhooks(request: Request) -> dict[str, Any]:
    """Every webhook, newest first (never a secret)."""
    webhooks = await request.app.state.engine.store.webhook_list()
    return {"data": [webhook_json(w) for w in webhooks], "next_cursor": None}


@router.get("/{webhook_id}")
async def get_webhook(webhook_id: str, request: Request) -> dict[str, Any]:
    """One webhook, with the refusals this process saw lately."""
    webhook = await _get(request, webhook_id)
    refused = receiver(request.app.state.engine).refusals.get(webhook.id) or ()
    return {**webhook_json(webhook), "recent_refusals": [
        {"at": r.at.isoformat(), "reason": r.reason} for r in refused]}


@router.patch("/{webhook_id}")
async def update_webhook(webhook_id: str, body: WebhookPatch, request: Request) -> dict[str, Any]:
    """Change name, verification, event template or forwarding."""
    webhook = await _get(request, webhook_id)
    changes: dict[str, Any] = {"updated_at": now()}
    fields = body.model_fields_set
    if body.name is not None:
        changes["name"] = body.name
    if body.event is not None:
        changes["event"] = body.event
    if "forward" in fields:
        changes["forward"] = body.forward.model_dump(exclude_unset=True) if body.forward \
            else None
    generated = None
    if body.verify is not None:
        verify = body.verify
        same_kind = verify.kind == webhook.verify.get("kind")
        if verify.kind == "stripe" and verify.secret is None and same_kind:
            verify = verify.model_copy(update={"secret": "kept"})  # the stored one stays
        verify.check("body.verify")
        changes["verify"] = body.verify.options()
        if body.verify.secret is not None:
            changes["secret"] = _need_key(request).seal(webhook.id, body.verify.secret)
        elif verify.kind == "none":
            changes["secret"] = None
        elif not same_kind or webhook.secret is None:
            generated = _new_secret(verify.kind)
            changes["secret"] = _need_key(request).seal(webhook.id, generated)
        if "secret" in changes:
            changes.update(previous_secret=None, previous_until=None)
    if "event" not in changes and "verify" in changes and not body.event and \
            webhook.event == default_template(str(webhook.verify.get("kind"))):
        changes["event"] = default_template(str(changes["verify"]["kind"]))
    updated = replace(webhook, **changes)
    if not await request.app.state.engine.store.webhook_update(webhook=updated):
        raise NotFoundError(f"no webhook with id {webhook_id[:64]!r}")
    receiver(request.app.state.engine).invalidate(webhook.id)
    out = webhook_json(updated)
    if generated:
        out["secret"] = generated
    return out


@router.delete("/{webhook_id}", status_code=204)
async def delete_webhook(webhook_id: str, request: Request) -> Response:
    """Remove a webhook and its delivery records; ``/w/{id}`` then answers 404."""
    if not await request.app.state.engine.store.webhook_delete(webhook_id=webhook_id):
        raise NotFoundError(f"no webhook with id {webhook_id[:64]!r}")
    receiver(request.app.state.engine).invalidate(webhook_id)
    return Response(status_code=204)


@router.post("/{webhook_id}/rotate")
async def rotate_secret(webhook_id: str, body: RotateIn, request: Request) -> dict[str, Any]:
    """Replace the secret; the previous one is accepted for ``overlap`` seconds more."""
    webhook = await _get(request, webhook_id)
    kind = str(webhook.verify.get("kind"))
    if kind == "none":
        raise ValidationError("body", "a webhook of kind 'none' has no secret", "no_secret")
    if kind == "stripe" and body.secret is None:
        raise ValidationError("body.secret", "is required for Stripe: roll the secret in "
                              "Stripe and give the new one", "missing")
    if kind == "standard" and body.secret is not None:
        VerifyIn.model_validate({"kind": "standard", "secret": body.secret}).check("body")
    vault = _need_key(request)
    secret = body.secret or _new_secret(kind)
    at = now()
    updated = replace(webhook, secret=vault.seal(webhook.id, secret),
                      previous_secret=webhook.secret if body.overlap else None,
                      previous_until=at + timedelta(seconds=body.overlap)
                      if body.overlap else None, updated_at=at)
    await request.app.state.engine.store.webhook_update(webhook=updated)
    receiver(request.app.state.engine).invalidate(webhook.id)
    out = webhook_json(updated)
    if body.secret is None:
        out["secret"] = secret
    return out


@router.get("/{webhook_id}/deliveries")
async def list_deliveries(
    webhook_id: str, request: Request,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """Accepted deliveries newest first: raw body, audit headers, the event each became."""
    await _get(request, webhook_id)
    if cursor is not None and "\x00" in cursor:
        raise ValidationError("query.cursor", "must not contain NUL characters",
                              "invalid_character")
    page = await request.app.state.engine.store.webhook_delivery_list(
        webhook_id=webhook_id, cursor=cursor, limit=limit)
    return {"data": [delivery_json(d) for d in page.data], "next_cursor": page.next_cursor}


async def send_test(engine: Any, webhook: Webhook) -> Outcome:
    """Sign a small delivery as the provider would and receive it (the "test" button)."""
    delivery_id = f"test_{new_id()}"
    kind = str(webhook.verify.get("kind"))
    body = orjson.dumps(sample_body(kind, delivery_id))
    secret = None
    if webhook.secret is not None:
        secret = engine.vault.open(webhook.id, webhook.secret)
    headers = signed_headers(kind, webhook.verify, secret, body, delivery_id=delivery_id)
    return await receiver(engine).receive(webhook.id, headers, body)


@router.post("/{webhook_id}/test")
async def test_delivery(webhook_id: str, request: Request) -> dict[str, Any]:
    """Send a signed test delivery through the normal receive path."""
    webhook = await _get(request, webhook_id)
    outcome = await send_test(request.app.state.engine, webhook)
    if outcome.delivery is None:
        raise ConflictError(f"the test delivery was refused: {outcome.reason}")
    return {"ok": True, "delivery": delivery_json(outcome.delivery)}

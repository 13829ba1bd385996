"""Dashboard pages ``/webhooks`` and ``/webhooks/{id}`` (inbound provider webhooks) and
``/secrets`` (stored secrets: names and dates only).

A webhook's page shows its URL and verification, the latest accepted deliveries
(with the event each became and the runs it started), the deliveries this process
refused and why, and a "Send test delivery" button that signs a small delivery the
way the provider would and sends it through the normal receive path.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from offload.api.shapes import run_json
from offload.api.v1.secrets import secret_json
from offload.api.v1.webhooks import delivery_json, receiver, send_test, webhook_json
from offload.dashboard.routes import _gate, _post_gate, _redirect, _render
from offload.store.base import RunFilter

router = APIRouter(include_in_schema=False)

SHOWN = 25
"""Deliveries shown on a webhook's page."""
_SENT = {"ok": "Test delivery accepted: its event and runs are listed below.",
         "refused": "Test delivery refused (see Refused deliveries below)."}


@router.get("/webhooks")
async def webhooks_page(request: Request) -> Response:
    """Every webhook with its URL and verification."""
    if (gate := _gate(request)) is not None:
        return gate
    webhooks = await request.app.state.engine.store.webhook_list()
    base = str(request.base_url).rstrip("/")
    return _render(request, "webhooks.html", {
        "nav": "webhooks", "base": base, "webhooks": [webhook_json(w) for w in webhooks]})


@router.get("/webhooks/{webhook_id}")
async def webhook_page(webhook_id: str, request: Request) -> Response:
    """One webhook: deliveries, refusals, runs started, and the test button."""
    if (gate := _gate(request)) is not None:
        return gate
    engine = request.app.state.engine
    webhook = await engine.store.webhook_get(webhook_id=webhook_id[:64])
    if webhook is None:
        return _render(request, "error.html", {
            "title": "Not found", "message": "There is no webhook with this id."},
            status_code=404)
    page = await engine.store.webhook_delivery_list(webhook_id=webhook.id, cursor=None,
                                                    limit=SHOWN)
    deliveries: list[dict[str, Any]] = []
    for delivery in page.data:
        runs: list[dict[str, Any]] = []
        if delivery.event_id:
            started = await engine.store.run_list(
                filter=RunFilter(event_id=delivery.event_id), cursor=None, limit=20)
            runs = [run_json(r) for r in started.data]
        deliveries.append({**delivery_json(delivery), "runs": runs})
    refusals = list(receiver(engine).refusals.get(webhook.id) or ())
    return _render(request, "webhook.html", {
        "nav": "webhooks", "webhook": webhook_json(webhook),
        "full_url": str(request.base_url).rstrip("/") + f"/w/{webhook.id}",
        "deliveries": deliveries, "more": page.next_cursor is not None,
        "refusals": refusals, "sent": _SENT.get(request.query_params.get("sent") or "")})


@router.get("/secrets")
async def secrets_page(request: Request) -> Response:
    """Stored secrets: names, references and dates (values never leave the engine)."""
    if (gate := _gate(request)) is not None:
        return gate
    secrets = await request.app.state.engine.store.secret_list()
    return _render(request, "secrets.html", {
        "nav": "webhooks", "secrets": [secret_json(s) for s in secrets],
        "has_key": request.app.state.engine.vault.box is not None})


@router.post("/webhooks/{webhook_id}/test")
async def webhook_test(webhook_id: str, request: Request) -> Response:
    """Sign and receive a test delivery, then show the page again."""
    _, refused = await _post_gate(request)
    if refused is not None:
        return refused
    engine = request.app.state.engine
    webhook = await engine.store.webhook_get(webhook_id=webhook_id[:64])
    if webhook is None:
        return _redirect("/webhooks")
    outcome = await send_test(engine, webhook)
    sent = "ok" if outcome.delivery is not None else "refused"
    return _redirect(f"/webhooks/{webhook.id}?sent={sent}")

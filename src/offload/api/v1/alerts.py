"""``/v1/alerts``: alert rules (create, list, read, replace, delete) and their firings.

Rules declared in settings (``OFFLOAD_ALERT_RULES``) are listed too, with
``source: "settings"``; they are changed in the settings, not here (409).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from offload.api.auth import require
from offload.api.problems import problem_responses
from offload.clock import now
from offload.engine.alerts import (
    SETTINGS_PREFIX,
    AlertRuleIn,
    Rule,
    all_rules,
    rule_json,
    stored_rule,
    to_stored,
)
from offload.engine.pause import ops_store
from offload.errors import AddressRefusedError, ConflictError, NotFoundError, ValidationError
from offload.ids import new_id
from offload.store.ops import AlertEvent

router = APIRouter(prefix="/v1/alerts", tags=["alerts"],
                   dependencies=[Depends(require("admin"))],
                   responses=problem_responses(400, 401, 403, 404, 409, 413, 422, 503))

_RuleId = Annotated[str, Path(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.:-]+$")]


def event_json(event: AlertEvent) -> dict[str, Any]:
    """A firing or resolving as the API shows it."""
    return {"id": event.id, "rule_id": event.rule_id, "rule_name": event.rule_name,
            "status": event.status, "value": event.value, "message": event.message,
            "run_id": event.run_id, "at": event.at.isoformat()}


def _declared(request: Request) -> list[Rule]:
    declared: list[Rule] = request.app.state.engine.alerts.declared
    return declared


async def _rules_json(request: Request) -> list[dict[str, Any]]:
    store = request.app.state.engine.store
    states = {s.rule_id: s for s in await ops_store(store).alert_state_list()}
    return [rule_json(r, states.get(r.id))
            for r in await all_rules(store, _declared(request))]


async def _one(request: Request, rule_id: str) -> dict[str, Any]:
    for rule in await _rules_json(request):
        if rule["id"] == rule_id:
            return rule
    raise NotFoundError(f"no alert rule with id {rule_id[:80]!r}")


def _guard_url(request: Request, url: str) -> None:
    """Refuse now (422) a URL the SSRF guard would refuse when the notification is sent."""
    policy = getattr(request.app.state.engine.client, "policy", None)
    if policy is None:
        return
    try:
        policy.check_url(url)
    except AddressRefusedError as exc:
        raise ValidationError("body.url", str(exc), "address_refused") from None


def _name_free(request: Request, name: str) -> None:
    if any(r.name == name for r in _declared(request)):
        raise ConflictError(f"an alert rule named {name!r} is declared in settings")


@router.get("")
async def list_alerts(request: Request) -> dict[str, Any]:
    """Every rule (from settings and from this API) with its state: ok, firing, pending."""
    return {"data": await _rules_json(request), "next_cursor": None}


@router.post("", status_code=201)
async def create_alert(body: AlertRuleIn, request: Request) -> dict[str, Any]:
    """Create a rule; it is evaluated within ``OFFLOAD_ALERT_EVERY_S`` seconds."""
    _guard_url(request, body.url)
    _name_free(request, body.name)
    at = now()
    rule_id = new_id()
    if not await ops_store(request.app.state.engine.store).alert_rule_put(
            to_stored(rule_id, body, at, at), create=True):
        raise ConflictError(f"an alert rule named {body.name!r} exists")
    return await _one(request, rule_id)


@router.get("/events")
async def list_alert_events(
    request: Request,
    rule_id: Annotated[str | None, Query(max_length=80, pattern=r"^[A-Za-z0-9_.:-]+$")
                       ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Firings and resolvings newest first, each with the run delivering its notification."""
    events = await ops_store(request.app.state.engine.store).alert_event_list(
        rule_id=rule_id, limit=limit)
    return {"data": [event_json(e) for e in events], "next_cursor": None}


@router.get("/{rule_id}")
async def get_alert(rule_id: _RuleId, request: Request) -> dict[str, Any]:
    """One rule with its state."""
    return await _one(request, rule_id)


@router.put("/{rule_id}")
async def replace_alert(rule_id: _RuleId, body: AlertRuleIn, request: Request
                        ) -> dict[str, Any]:
    """Replace a rule made through this API (its state is kept)."""
    if rule_id.startswith(SETTINGS_PREFIX):
        raise ConflictError("this rule is declared in settings; change it there")
    store = ops_store(request.app.state.engine.store)
    existing = await store.alert_rule_get(rule_id=rule_id)
    if existing is None:
        raise NotFoundError(f"no alert rule with id {rule_id[:80]!r}")
    _guard_url(request, body.url)
    _name_free(request, body.name)
    if not await store.alert_rule_put(
            to_stored(rule_id, body, stored_rule(existing).created_at or now(), now()),
            create=False):
        raise ConflictError(f"an alert rule named {body.name!r} exists")
    return await _one(request, rule_id)


@router.delete("/{rule_id}", status_code=204)
async def delete_alert(rule_id: _RuleId, request: Request) -> Response:
    """Delete a rule made through this API (no resolving is sent)."""
    if rule_id.startswith(SETTINGS_PREFIX):
        raise ConflictError("this rule is declared in settings; remove it there")
    if not await ops_store(request.app.state.engine.store).alert_rule_delete(rule_id=rule_id):
        raise NotFoundError(f"no alert rule with id {rule_id[:80]!r}")
    return Response(status_code=204)

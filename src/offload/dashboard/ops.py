"""Dashboard pages for operators: the audit log (``/audit``), alerts (``/alerts``), and
the Pause / Resume buttons of functions (``/functions/{id}``) and queues (``/queues``).

Every action here is recorded in the audit log by :mod:`offload.api.auditing`.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from offload.dashboard.routes import _gate, _post_gate, _redirect, _render
from offload.engine import pause as pausing
from offload.engine.alerts import all_rules, rule_json
from offload.engine.audit import audit_json
from offload.engine.pause import ops_store
from offload.models import HTTP_FUNCTION_ID
from offload.store.ops import AuditFilter

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
_TARGET_LINKS = {"run": "/runs/{}", "function": "/functions/{}", "queue": "/queues",
                 "bulk_job": "/bulk/{}", "app": "/apps", "alert": "/alerts"}


def target_link(kind: str | None, target: str | None) -> str | None:
    """Where the dashboard shows an audit entry's target, if anywhere."""
    pattern = _TARGET_LINKS.get(kind or "")
    if pattern is None or not target:
        return None
    return pattern.format(quote(target, safe=""))


def _text(request: Request, name: str, limit: int = 200) -> str | None:
    value = (request.query_params.get(name) or "").strip()[:limit]
    return value or None


@router.get("/audit")
async def audit_page(request: Request) -> Response:
    """The audit log, newest first, filtered by action, actor or target."""
    if (gate := _gate(request)) is not None:
        return gate
    params = {k: v for k in ("action", "actor", "target") if (v := _text(request, k))}
    cursor = _text(request, "cursor", 64)
    page = await ops_store(request.app.state.engine.store).audit_list(
        filter=AuditFilter(action=params.get("action"), actor=params.get("actor"),
                           target_id=params.get("target")), cursor=cursor, limit=PAGE_SIZE)
    entries = [{**audit_json(e), "link": target_link(e.target_kind, e.target_id),
                "related_link": target_link("run", e.related_id)} for e in page.data]
    return _render(request, "audit.html", {
        "nav": "audit", "entries": entries, "params": params,
        "next_url": f"/audit?{urlencode({**params, 'cursor': page.next_cursor})}"
        if page.next_cursor else None,
        "first_url": f"/audit?{urlencode(params)}" if cursor else None})


@router.get("/alerts")
async def alerts_page(request: Request) -> Response:
    """Alert rules with their state, and recent firings and resolvings."""
    if (gate := _gate(request)) is not None:
        return gate
    engine = request.app.state.engine
    store = ops_store(engine.store)
    states = {s.rule_id: s for s in await store.alert_state_list()}
    rules = [rule_json(r, states.get(r.id))
             for r in await all_rules(engine.store, engine.alerts.declared)]
    events = await store.alert_event_list(limit=100)
    return _render(request, "alerts.html", {
        "nav": "alerts", "rules": rules, "events": events,
        "firing": sum(1 for r in rules if r["state"]["status"] == "firing"),
        "every_s": engine.settings.alert_every_s})


async def _switch(request: Request, kind: pausing.PauseKind, target: str, on: bool,
                  back: str) -> Response:
    _, refused = await _post_gate(request)
    if refused is not None:
        return refused
    store = request.app.state.engine.store
    if kind == "function" and target != HTTP_FUNCTION_ID and \
            await store.function_get(function_id=target) is None:
        return _render(request, "error.html", {"title": "Function not found",
                                               "message": f"No function {target[:200]}."},
                       status_code=404)
    if kind == "queue" and not _queue_name_ok(target):
        return _render(request, "error.html", {"title": "Bad queue name",
                                               "message": "Queue names are 1-64 letters, "
                                                          "digits and _ . : -"},
                       status_code=400)
    if on:
        session = getattr(request.state, "dashboard_session", None)
        user = getattr(session, "user", None)
        await pausing.pause(store, kind, target,
                            by=f"dashboard:{user}" if user else "dashboard")
    else:
        await pausing.resume(store, kind, target)
    return _redirect(back)


def _queue_name_ok(name: str) -> bool:
    import re

    from offload.api.v1.pause import QUEUE_NAME

    return re.match(QUEUE_NAME, name) is not None


@router.post("/functions/{function_id}/pause")
async def function_pause(function_id: str, request: Request) -> Response:
    """Pause a function from its page."""
    return await _switch(request, "function", function_id, True,
                         f"/functions/{quote(function_id, safe='')}")


@router.post("/functions/{function_id}/resume")
async def function_resume(function_id: str, request: Request) -> Response:
    """Resume a function from its page."""
    return await _switch(request, "function", function_id, False,
                         f"/functions/{quote(function_id, safe='')}")


@router.post("/queues/pause")
async def queue_pause_by_name(request: Request) -> Response:
    """Pause the queue named in the form (it need not have items yet)."""
    form = await request.form()
    name = str(form.get("name") or "").strip()
    response = await _switch(request, "queue", name, True, "/queues")
    if response.status_code == 303:  # not one of the audited routes: its path has no name
        from offload.api.auditing import audit_request

        await audit_request(request, action="queue.pause", target_kind="queue", target_id=name)
    return response


@router.post("/queues/{name}/pause")
async def queue_pause(name: str, request: Request) -> Response:
    """Pause a queue from the Queues page."""
    return await _switch(request, "queue", name, True, "/queues")


@router.post("/queues/{name}/resume")
async def queue_resume(name: str, request: Request) -> Response:
    """Resume a queue from the Queues page."""
    return await _switch(request, "queue", name, False, "/queues")

"""The dashboard: server-rendered pages at ``/`` (Jinja2, plain forms, no JS build step).

Pages: overview with charts (``/``), runs with filters (``/runs``), failed runs, the
dead-letter view (``/failed``), one run (``/runs/{id}``), bulk jobs (``/bulk/{id}``),
events (``/events``), apps and functions (``/apps``), cron schedules (``/crons``)
and queues (``/queues``). Everything shown goes through :mod:`offload.api.shapes`,
which redacts credentials. Every POST needs the session's CSRF token; outside dev
mode every page needs a login (:mod:`offload.dashboard.login`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from math import ceil
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from offload import __version__
from offload.api.shapes import app_json, event_json, function_json, run_json
from offload.api.v1.runs import rerun_from_step
from offload.clock import now
from offload.dashboard.login import Sessions
from offload.engine.apps import AppSyncError
from offload.engine.bulk import BulkJobs
from offload.engine.cron import next_tick
from offload.engine.cron_service import cron_schedule
from offload.errors import CronError, ValidationError
from offload.models import HTTP_FUNCTION_ID, Function, Run, RunStatus
from offload.outbound.tracing import trace_id
from offload.security.redact import redact_headers
from offload.store.base import RunFilter

router = APIRouter(include_in_schema=False)

_HERE = Path(__file__).parent
_STATIC = _HERE / "static"
_STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".svg": "image/svg+xml"}
templates = Jinja2Templates(directory=str(_HERE / "templates"))

PAGE_SIZE = 50
_RANGES = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "24h": timedelta(hours=24),
           "7d": timedelta(days=7)}
_MAX_SHOWN = 100_000
"""Characters of one JSON value shown on a page; the rest is cut."""
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' "
                               "'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_NOTICES = {
    "cancelled": "Run cancelled.",
    "already_ended": "The run had already ended; nothing was cancelled.",
    "resync_done": "App synced again.",
    "resync_failed": "Resync failed: the app's sync error is shown below.",
    "resync_unavailable": "This engine cannot resync apps.",
    "bulk_stopped": "Bulk job stopped.",
    "rerun_failed": "Rerun from step failed.",
    "event_sent": "Event sent.",
}


# -- formatting ----------------------------------------------------------------------------

def _fmt_dt(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1000:
        return f"{value:.0f} ms"
    seconds = value / 1000
    if seconds < 60:
        return f"{seconds:.2f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} m {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} m"


def _duration_ms(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds() * 1000)


def _without_secrets(value: Any) -> Any:
    """A stored response or request with credential headers redacted (e.g. set-cookie)."""
    if isinstance(value, dict) and isinstance(value.get("headers"), dict):
        return {**value, "headers": redact_headers(value["headers"])}
    return value


def _pretty(value: Any) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str, sort_keys=False)
    if len(text) > _MAX_SHOWN:
        return text[:_MAX_SHOWN] + f"\n… ({len(text) - _MAX_SHOWN} more characters not shown)"
    return text


templates.env.filters["dt"] = _fmt_dt
templates.env.filters["ms"] = _fmt_ms
templates.env.filters["pretty"] = _pretty


# -- sessions, gates and rendering ---------------------------------------------------------

def _sessions(request: Request) -> Sessions:
    sessions = getattr(request.app.state, "dashboard_sessions", None)
    if not isinstance(sessions, Sessions):
        sessions = Sessions(request.app.state.engine.settings)
        request.app.state.dashboard_sessions = sessions
    return sessions


def _bulk(request: Request) -> BulkJobs:
    bulk: BulkJobs = request.app.state.engine.bulk
    return bulk


def _render(request: Request, name: str, context: dict[str, Any], *,
            status_code: int = 200) -> Response:
    sessions = _sessions(request)
    session = sessions.load(request)
    settings = request.app.state.engine.settings
    notice = request.query_params.get("notice")
    context = {
        "request": request, "csrf": session.csrf, "user": session.user, "dev": settings.dev,
        "version": __version__, "notice": _NOTICES.get(notice or ""), "path": request.url.path,
        **context,
    }
    response = templates.TemplateResponse(request, name, context, status_code=status_code,
                                          headers=_SECURITY_HEADERS)
    sessions.set_cookie(request, response)
    return response


def _gate(request: Request) -> Response | None:
    """A redirect to the login page unless the session may see the dashboard."""
    sessions = _sessions(request)
    if sessions.logged_in(sessions.load(request)):
        return None
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    response = RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    sessions.set_cookie(request, response)
    return response


async def _post_gate(request: Request) -> tuple[FormData, Response | None]:
    """The form, and a 403 page if the session is not logged in or the CSRF token is wrong."""
    form = await request.form()
    sessions = _sessions(request)
    session = sessions.load(request)
    if not sessions.csrf_ok(session, form.get("csrf")):
        return form, _render(request, "error.html", {
            "title": "Request refused",
            "message": "The form's security token is missing or does not match your session "
                       "(CSRF protection). Reload the page and try again."}, status_code=403)
    if not sessions.logged_in(session):
        return form, _render(request, "error.html", {
            "title": "Login required", "message": "Log in to do this."}, status_code=403)
    return form, None


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _safe_next(value: str | None) -> str:
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


# -- static files --------------------------------------------------------------------------

@router.get("/static/{name}")
async def static(name: str) -> Response:
    """A vendored or hand-written static file (no directory traversal: names only)."""
    path = _STATIC / name
    if "/" in name or name.startswith(".") or not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    media = _STATIC_TYPES.get(path.suffix, "text/plain; charset=utf-8")
    return FileResponse(path, media_type=media,
                        headers={"Cache-Control": "public, max-age=3600",
                                 "X-Content-Type-Options": "nosniff"})


# -- login ---------------------------------------------------------------------------------

@router.get("/login")
async def login_page(request: Request) -> Response:
    """The login form (in dev mode: straight to the dashboard)."""
    if _sessions(request).logged_in(_sessions(request).load(request)):
        return _redirect(_safe_next(request.query_params.get("next")))
    settings = request.app.state.engine.settings
    return _render(request, "login.html", {
        "next": _safe_next(request.query_params.get("next")), "error": None,
        "has_password": bool(settings.dashboard_password_hash)})


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the password or admin API key; on success issue a fresh session."""
    form = await request.form()
    sessions = _sessions(request)
    session = sessions.load(request)
    settings = request.app.state.engine.settings
    target = _safe_next(str(form.get("next") or "/"))
    if not sessions.csrf_ok(session, form.get("csrf")):
        return _render(request, "error.html", {
            "title": "Request refused",
            "message": "The login form expired or came from another site (CSRF protection). "
                       "Reload the login page and try again."}, status_code=403)
    key, known = sessions.throttle_key(request)
    context = {"next": target, "has_password": bool(settings.dashboard_password_hash)}
    wait = sessions.throttle.wait(key, known_device=known)
    if wait > 0:  # slowed down, never locked out: the password is not checked this time
        response = _render(request, "login.html", {
            **context, "error": f"Too many failed attempts. Try again in {ceil(wait)} s."},
            status_code=429)
        response.headers["Retry-After"] = str(ceil(wait))
        return response
    secret = str(form.get("secret") or "")
    who = await sessions.check_secret(secret, request.app.state.auth)
    if who is None:
        sessions.throttle.failed(key, known_device=known)
        return _render(request, "login.html", {
            **context, "error": "Wrong password or key."}, status_code=401)
    sessions.throttle.succeeded(key)
    await sessions.begin(request, who, secret)
    response = _redirect(target)
    sessions.set_cookie(request, response)
    sessions.set_device_cookie(request, response)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session: the cookie is replaced by an anonymous one."""
    form = await request.form()
    sessions = _sessions(request)
    if not sessions.csrf_ok(sessions.load(request), form.get("csrf")):
        return _render(request, "error.html", {
            "title": "Request refused", "message": "Missing or wrong CSRF token."},
            status_code=403)
    await sessions.end(request)
    response = _redirect("/login")
    sessions.set_cookie(request, response)
    return response


# -- overview ------------------------------------------------------------------------------

async def _overview_data(request: Request) -> dict[str, Any]:
    store = request.app.state.engine.store
    at = now()
    minute = 60
    start = (at - timedelta(minutes=60)).replace(second=0, microsecond=0)
    buckets = {b.start: b for b in await store.run_stats(since=start, bucket_s=minute)}
    series: dict[str, list[Any]] = {k: [] for k in (
        "t", "created", "completed", "failed", "cancelled", "failure_rate", "lag_avg_s",
        "lag_max_s")}
    slot = start
    while slot <= at:
        b = buckets.get(slot)
        series["t"].append(int(slot.timestamp()))
        created = b.created if b else 0
        completed = b.completed if b else 0
        failed = b.failed if b else 0
        series["created"].append(created)
        series["completed"].append(completed)
        series["failed"].append(failed)
        series["cancelled"].append(b.cancelled if b else 0)
        done = completed + failed
        series["failure_rate"].append(round(100 * failed / done, 1) if done else None)
        series["lag_avg_s"].append(round(b.lag_avg_ms / 1000, 3)
                                   if b and b.lag_avg_ms is not None else None)
        series["lag_max_s"].append(round(b.lag_max_ms / 1000, 3)
                                   if b and b.lag_max_ms is not None else None)
        slot += timedelta(seconds=minute)
    counts: dict[str, int] = {s.value: 0 for s in RunStatus}
    for (_function, status), n in (await store.run_count_by_status()).items():
        counts[status] = counts.get(status, 0) + n
    queues = await store.queue_stats(now=at)
    oldest = [q.oldest_due_at for q in queues if q.oldest_due_at is not None]
    return {
        "at": int(at.timestamp()), "series": series, "status": counts,
        "queue": {"due": sum(q.due for q in queues), "scheduled": sum(q.scheduled for q in queues),
                  "inflight": sum(q.leased for q in queues),
                  "oldest_due_age_s": round((at - min(oldest)).total_seconds(), 3)
                  if oldest else 0.0},
    }


@router.get("/")
async def overview(request: Request) -> Response:
    """Counts, throughput, lag, queue depth and per-function durations and failure rate."""
    if (gate := _gate(request)) is not None:
        return gate
    data = await _overview_data(request)
    stats = await request.app.state.engine.store.function_stats(since=now() - timedelta(days=1))
    longest = max((s.p99_ms or 0 for s in stats), default=0) or 1
    return _render(request, "overview.html", {
        "data": data, "functions": stats, "longest": longest, "nav": "overview"})


@router.get("/overview.json")
async def overview_json(request: Request) -> Response:
    """The overview's chart data, polled by the page."""
    if not _sessions(request).logged_in(_sessions(request).load(request)):
        return JSONResponse({"error": "login required"}, status_code=401)
    return JSONResponse(await _overview_data(request), headers={"Cache-Control": "no-store"})


# -- runs ----------------------------------------------------------------------------------

@dataclass
class RunQuery:
    """The runs filter as the form and the URL carry it."""

    status: str = ""
    function: str = ""
    queue: str = ""
    event: str = ""
    range: str = ""
    since: str = ""
    until: str = ""
    q: str = ""
    name: str = ""
    hide_replayed: str = ""
    """``1``: leave out runs that were replayed (the failed view's default)."""

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> RunQuery:
        """From query parameters or form fields (unknown keys ignored, values trimmed)."""
        def get(key: str, limit: int) -> str:
            value = values.get(key)
            return str(value).strip()[:limit] if value is not None else ""
        return cls(status=get("status", 20), function=get("function", 512),
                   queue=get("queue", 64), event=get("event", 256), range=get("range", 8),
                   since=get("since", 40), until=get("until", 40), q=get("q", 200),
                   name=get("name", 255), hide_replayed=get("hide_replayed", 1))

    def params(self) -> dict[str, str]:
        """The non-empty fields, for links and hidden form fields."""
        return {k: v for k, v in self.__dict__.items() if v}

    def to_filter(self, *, at: datetime, errors: list[str]) -> RunFilter:
        """A store filter; problems with the input are appended to ``errors``."""
        statuses: tuple[RunStatus, ...] = ()
        if self.status:
            try:
                statuses = (RunStatus(self.status),)
            except ValueError:
                errors.append(f"unknown status {self.status!r}")
        after = at - _RANGES[self.range] if self.range in _RANGES else None
        since, until = _parse_time(self.since, errors), _parse_time(self.until, errors)
        if since is not None:
            after = since if after is None else max(after, since)
        return RunFilter(statuses=statuses, function_id=self.function or None,
                         queue=self.queue or None, event_name=self.event or None,
                         created_after=after, created_before=until, search=self.q or None,
                         name=self.name or None, unreplayed=self.hide_replayed == "1")


def _parse_time(value: str, errors: list[str]) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        errors.append(f"cannot read the time {value!r}; use YYYY-MM-DDTHH:MM (UTC)")
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _run_row(run: Run, at: datetime) -> dict[str, Any]:
    body = run_json(run)
    error = run.error or {}
    body["duration"] = _fmt_ms(_duration_ms(run.started_at, run.ended_at or (
        at if run.started_at and not run.status.terminal else None)))
    body["error_text"] = str(error.get("message") or error.get("name") or "")[:160]
    body["target"] = task_target(run)
    return body


def task_target(run: Run) -> str | None:
    """An HTTP task as ``METHOD host/path`` (None for other functions)."""
    if run.function_id != HTTP_FUNCTION_ID or not isinstance(run.input, dict):
        return None
    parts = urlsplit(str(run.input.get("url") or ""))
    return f"{run.input.get('method') or 'POST'} {parts.netloc}{parts.path or '/'}"


BULK_COUNT_CAP = 10_000
"""Bulk confirmations count matching runs up to this many (then say "more than"): the
count is taken on every render of the runs page, so it must stay cheap on large tables."""


async def _runs_page(request: Request, *, failed_view: bool) -> Response:
    if (gate := _gate(request)) is not None:
        return gate
    store = request.app.state.engine.store
    query = RunQuery.parse(request.query_params)
    if failed_view:
        query.status = RunStatus.FAILED.value
        show_replayed = request.query_params.get("replayed") == "1"
        query.hide_replayed = "" if show_replayed else "1"
    errors: list[str] = []
    at = now()
    run_filter = query.to_filter(at=at, errors=errors)
    cursor = request.query_params.get("cursor") or None
    page = await store.run_list(filter=run_filter, cursor=cursor, limit=PAGE_SIZE)
    functions = sorted({HTTP_FUNCTION_ID, *(f.id for f in await store.function_list())})
    params = query.params()
    if failed_view:
        params.pop("status", None)
        params.pop("hide_replayed", None)
        if not query.hide_replayed:
            params["replayed"] = "1"
    rows = [_run_row(r, at) for r in page.data]
    replays = await store.run_replays(run_ids=[r["id"] for r in rows])
    for row in rows:
        row["replayed_as"] = replays.get(row["id"])
    bulk_count = await store.run_count_upto(filter=run_filter, limit=BULK_COUNT_CAP + 1)
    base = "/failed" if failed_view else "/runs"
    next_url = (f"{base}?{urlencode({**params, 'cursor': page.next_cursor})}"
                if page.next_cursor else None)
    return _render(request, "runs.html", {
        "nav": "failed" if failed_view else "runs", "failed_view": failed_view,
        "query": query, "params": params, "errors": errors, "base": base,
        "runs": rows, "next_url": next_url, "bulk_count": bulk_count,
        "bulk_cap": BULK_COUNT_CAP, "hidden": query.params(),
        "first_url": f"{base}?{urlencode(params)}" if cursor else None,
        "functions": functions, "statuses": [s.value for s in RunStatus],
        "ranges": list(_RANGES), "auto_refresh": cursor is None})


@router.get("/runs")
async def runs(request: Request) -> Response:
    """Runs, newest first, filtered, with keyset pagination and bulk actions."""
    return await _runs_page(request, failed_view=False)


@router.get("/failed")
async def failed(request: Request) -> Response:
    """Failed runs: the dead-letter view, with bulk replay."""
    return await _runs_page(request, failed_view=True)


@router.post("/runs/bulk")
async def bulk_start(request: Request) -> Response:
    """Replay or cancel every run the submitted filter selects, in the background."""
    form, refused = await _post_gate(request)
    if refused is not None:
        return refused
    action = form.get("action")
    if action not in ("replay", "cancel"):
        return _render(request, "error.html", {"title": "Unknown action",
                                               "message": "Choose replay or cancel."},
                       status_code=400)
    errors: list[str] = []
    query = RunQuery.parse(form)
    run_filter = query.to_filter(at=now(), errors=errors)
    if errors:
        return _render(request, "error.html", {"title": "Bad filter",
                                               "message": "; ".join(errors)}, status_code=400)
    if form.get("confirmed") != "1":  # no JS, or a forged form: show the count first
        count = await request.app.state.engine.store.run_count_upto(
            filter=run_filter, limit=BULK_COUNT_CAP + 1)
        return _render(request, "bulk_confirm.html", {
            "nav": "runs", "action": action, "count": count, "cap": BULK_COUNT_CAP,
            "hidden": query.params()})
    job = await _bulk(request).start("replay" if action == "replay" else "cancel", run_filter)
    return _redirect(f"/bulk/{job.id}")


@router.get("/bulk/{job_id}")
async def bulk_page(job_id: str, request: Request) -> Response:
    """A bulk job's progress (auto-refreshing while it runs)."""
    if (gate := _gate(request)) is not None:
        return gate
    job = await _bulk(request).get(job_id)
    if job is None:
        return _render(request, "error.html", {
            "title": "No such bulk job", "message": f"There is no bulk job {job_id[:64]}."},
            status_code=404)
    return _render(request, "bulk.html", {"job": job, "nav": "runs"})


@router.post("/bulk/{job_id}/stop")
async def bulk_stop(job_id: str, request: Request) -> Response:
    """Stop a running bulk job."""
    _, refused = await _post_gate(request)
    if refused is not None:
        return refused
    await _bulk(request).stop(job_id)
    return _redirect(f"/bulk/{quote(job_id)}?notice=bulk_stopped")


# -- one run -------------------------------------------------------------------------------

def _bar(start: datetime | None, end: datetime | None, origin: datetime,
         total_s: float) -> dict[str, float] | None:
    if start is None:
        return None
    end = end or start
    left = max(0.0, (start - origin).total_seconds() / total_s * 100)
    width = max(0.4, (end - start).total_seconds() / total_s * 100)
    return {"left": round(min(left, 99.6), 2), "width": round(min(width, 100 - left), 2)}


def _timeline(run: Run, at: datetime) -> dict[str, Any]:
    origin = run.created_at
    end = run.ended_at or at
    for step in run.steps or []:
        if step.ended_at and step.ended_at > end:
            end = step.ended_at
    total_s = max((end - origin).total_seconds(), 0.001)
    rows: list[dict[str, Any]] = []
    if run.started_at:
        rows.append({"label": "queued", "kind": "wait",
                     "bar": _bar(origin, run.started_at, origin, total_s),
                     "duration": _fmt_ms(_duration_ms(origin, run.started_at))})
    attempts = run.state.get("attempts") if isinstance(run.state, dict) else None
    for entry in attempts if isinstance(attempts, list) else []:
        if not isinstance(entry, dict):
            continue
        started = _as_dt(entry.get("started_at"))
        ended = _as_dt(entry.get("ended_at"))
        error = entry.get("error") if isinstance(entry.get("error"), dict) else None
        rows.append({"label": f"attempt {entry.get('attempt')}",
                     "kind": "error" if error else "ok",
                     "bar": _bar(started, ended, origin, total_s),
                     "duration": _fmt_ms(_duration_ms(started, ended)),
                     "note": (f"HTTP {entry['status']}" if entry.get("status") else "")
                     + (f" {error.get('message', '')}" if error else "")})
    steps: list[dict[str, Any]] = []
    for step in run.steps or []:
        ending = step.ended_at or (at if step.status.value in ("running", "sleeping",
                                                               "waiting") else None)
        steps.append({"step": step, "bar": _bar(step.started_at, ending, origin, total_s),
                      "duration": _fmt_ms(_duration_ms(step.started_at, step.ended_at))})
    return {"rows": rows, "steps": steps, "total": _fmt_ms(total_s * 1000),
            "origin": origin, "end": end}


def _as_dt(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _attempt_durations(step: dict[str, Any]) -> None:
    """Add ``duration_ms`` to each entry of a step's attempt history (when it has one)."""
    history = step.get("history")
    for entry in history if isinstance(history, list) else []:
        if isinstance(entry, dict) and "duration_ms" not in entry:
            entry["duration_ms"] = _duration_ms(_as_dt(entry.get("started_at")),
                                                _as_dt(entry.get("ended_at")))


def _restarts(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The engine restarts a run lived through (``restarts`` of the API's run)."""
    value = body.get("restarts")
    return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []


def _trigger(run: Run) -> str:
    if run.replay_of:
        return "replay"
    if run.function_id == HTTP_FUNCTION_ID:
        return "HTTP task"
    if run.event_ids:
        return "event"
    return "invoke or schedule"


@router.get("/runs/{run_id}")
async def run_page(run_id: str, request: Request) -> Response:
    """One run: header, timeline of steps and attempts, actions."""
    if (gate := _gate(request)) is not None:
        return gate
    run: Run | None = await request.app.state.engine.store.run_get(run_id=run_id)
    if run is None:
        return _render(request, "error.html", {
            "title": "Run not found", "message": f"No run with id {run_id[:64]}."},
            status_code=404)
    at = now()
    due = await request.app.state.engine.store.run_next_attempts(run_ids=[run.id])
    body = run_json(run, due.get(run.id))
    body["output"] = _without_secrets(body["output"])
    from offload.engine.audit import run_actions  # who cancelled, replayed, reran it

    body["actions"] = await run_actions(request.app.state.engine.store, run.id)
    for step in body.get("steps", []):
        step["input"] = _without_secrets(step["input"])
        step["output"] = _without_secrets(step["output"])
    step_bodies = {s["id"]: s for s in body.get("steps", [])}
    timeline = _timeline(run, at)
    for row in timeline["steps"]:
        row["json"] = step_bodies.get(row["step"].id, {})
    for step_body in step_bodies.values():
        _attempt_durations(step_body)
    replays = await request.app.state.engine.store.run_replays(run_ids=[run.id])
    return _render(request, "run.html", {
        "nav": "runs", "run": body, "model": run, "trigger": _trigger(run),
        "replayed_as": replays.get(run.id), "restarts": _restarts(body),
        "target": task_target(run),
        "trace_id": trace_id(run.id, run.state.get("traceparent")),
        "timeline": timeline, "terminal": run.status.terminal,
        "duration": _fmt_ms(_duration_ms(run.started_at, run.ended_at)),
        "can_rerun": True})


@router.post("/runs/{run_id}/cancel")
async def run_cancel(run_id: str, request: Request) -> Response:
    """Cancel one run (as ``POST /v1/runs/{id}/cancel``)."""
    _, refused = await _post_gate(request)
    if refused is not None:
        return refused
    engine = request.app.state.engine
    cancelled = await engine.runs.cancel(run_id, "dashboard")
    notice = "cancelled" if cancelled is not None else "already_ended"
    return _redirect(f"/runs/{quote(run_id)}?notice={notice}")


@router.post("/runs/{run_id}/replay")
async def run_replay(run_id: str, request: Request) -> Response:
    """Replay one run (as ``POST /v1/runs/{id}/replay``); shows the new run."""
    _, refused = await _post_gate(request)
    if refused is not None:
        return refused
    engine = request.app.state.engine
    run = await engine.store.run_get(run_id=run_id, with_steps=False)
    if run is None:
        return _render(request, "error.html", {"title": "Run not found",
                                               "message": "Nothing to replay."},
                       status_code=404)
    replayed = await engine.runs.replay(run)
    return _redirect(f"/runs/{quote(replayed.id)}")


@router.post("/runs/{run_id}/rerun")
async def run_rerun(run_id: str, request: Request) -> Response:
    """Rerun from a step with edited input, when the engine provides ``rerun_from_step``."""
    form, refused = await _post_gate(request)
    if refused is not None:
        return refused
    engine = request.app.state.engine
    run = await engine.store.run_get(run_id=run_id)
    if run is None:
        return _render(request, "error.html", {"title": "Not available",
                                               "message": "Rerun from step is not available."},
                       status_code=404)
    raw = str(form.get("input") or "").strip()
    try:
        new_input = json.loads(raw) if raw else None
    except ValueError as exc:
        return _render(request, "error.html", {"title": "Input is not JSON",
                                               "message": str(exc)}, status_code=400)
    try:
        rerun = await rerun_from_step(engine, run, step_id=str(form.get("step_id") or ""),
                                      input=new_input)
    except ValidationError:
        return _redirect(f"/runs/{quote(run_id)}?notice=rerun_failed")
    return _redirect(f"/runs/{quote(rerun.id)}")


# -- events --------------------------------------------------------------------------------

@router.get("/events/{event_id}")
async def event_page(event_id: str, request: Request) -> Response:
    """One event and the runs it started."""
    if (gate := _gate(request)) is not None:
        return gate
    store = request.app.state.engine.store
    event = await store.event_get(event_id=event_id)
    if event is None:
        return _render(request, "error.html", {"title": "Event not found",
                                               "message": f"No event {event_id[:64]}."},
                       status_code=404)
    page = await store.run_list(filter=RunFilter(event_id=event_id), cursor=None, limit=200)
    at = now()
    return _render(request, "event.html", {
        "nav": "events", "event": event_json(event),
        "runs": [_run_row(r, at) for r in page.data], "more": page.next_cursor is not None})


# -- apps, functions, crons, queues --------------------------------------------------------

_FLOW_KEYS = ("concurrency", "throttle", "rateLimit", "debounce", "batchEvents", "priority",
              "singleton", "idempotency", "cancel", "timeouts")


def _function_view(function: Function) -> dict[str, Any]:
    body = function_json(function)
    config = function.config if isinstance(function.config, dict) else {}
    spec = function.spec
    body["triggers"] = [{"event": t.event, "expression": t.expression, "cron": t.cron,
                         "jitter": t.jitter} for t in spec.triggers]
    body["flow"] = {k: config[k] for k in _FLOW_KEYS if k in config}  # as configured
    body["retries"] = spec.retries
    return body


@router.get("/apps")
async def apps(request: Request) -> Response:
    """Apps with their sync state and functions (triggers, flow control)."""
    if (gate := _gate(request)) is not None:
        return gate
    store = request.app.state.engine.store
    views = []
    from offload.engine.pause import pauses, with_pause  # paused functions are marked

    paused = await pauses(store, "function")
    for app in await store.app_list():
        functions = await store.function_list(app_id=app.id)
        views.append({**app_json(app), "functions": [with_pause(_function_view(f), paused)
                                                     for f in functions]})
    return _render(request, "apps.html", {"nav": "apps", "apps": views,
                                          "can_resync": True})


@router.post("/apps/{app_id}/resync")
async def app_resync(app_id: str, request: Request) -> Response:
    """Ask the engine to sync an app again."""
    _, refused = await _post_gate(request)
    if refused is not None:
        return refused
    engine = request.app.state.engine
    app = await engine.store.app_get(app_id=app_id)
    if app is None:
        return _render(request, "error.html", {"title": "App not found",
                                               "message": f"No app {app_id[:64]}."},
                       status_code=404)
    try:
        await engine.apps.resync(app.id)
    except AppSyncError:  # recorded on the app: the page shows it as its sync error
        return _redirect("/apps?notice=resync_failed")
    return _redirect("/apps?notice=resync_done")


@router.get("/crons")
async def crons(request: Request) -> Response:
    """Functions with cron triggers, their next fire times and last tick."""
    if (gate := _gate(request)) is not None:
        return gate
    store = request.app.state.engine.store
    at = now()
    rows: list[dict[str, Any]] = []
    for function in await store.function_list():
        for trigger in function.spec.crons:
            row: dict[str, Any] = {"function": function.id, "app_id": function.app_id,
                                   "cron": trigger.cron, "jitter": trigger.jitter,
                                   "next": [], "error": None}
            try:
                schedule = cron_schedule(trigger)
                tick = at
                for _ in range(3):
                    tick = next_tick(schedule, tick)
                    row["next"].append(tick)
                row["tz"] = schedule.tz.key
            except CronError as exc:
                row["error"] = str(exc)
            row["last"] = await store.cron_last_tick(function_id=function.id)
            rows.append(row)
    return _render(request, "crons.html", {"nav": "crons", "crons": rows, "now": at})


async def _pause_queues(store: Any) -> list[dict[str, Any]]:
    """Queues with their pause state, for the Queues page's Pause / Resume buttons."""
    from offload.engine import pause as pausing

    return [pausing.queue_json(q) for q in await pausing.queues(store)]


@router.get("/queues")
async def queues(request: Request) -> Response:
    """Queue items per queue and function: backlog, scheduled, in flight, oldest due."""
    if (gate := _gate(request)) is not None:
        return gate
    engine = request.app.state.engine
    at = now()
    stats = await engine.store.queue_stats(now=at)
    rows = [{"queue": s.queue, "function": s.function_id, "kind": s.kind, "due": s.due,
             "scheduled": s.scheduled, "leased": s.leased,
             "oldest": _fmt_ms(_duration_ms(s.oldest_due_at, at)) if s.oldest_due_at else "—"}
            for s in stats]
    scheduler = getattr(engine, "scheduler", None)
    return _render(request, "queues.html", {
        "nav": "queues", "rows": rows,
        "totals": {"due": sum(s.due for s in stats), "scheduled": sum(s.scheduled for s in stats),
                   "leased": sum(s.leased for s in stats)},
        "pause_queues": await _pause_queues(engine.store),
        "local_inflight": getattr(scheduler, "inflight", None),
        "max_inflight": engine.settings.max_inflight})

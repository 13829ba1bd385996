"""The JSON shapes of runs, steps, events, apps and functions (DESIGN.md §4).

One place turns models into API answers, so the API, the dashboard and the CLI
show the same thing, and credentials in HTTP-task headers are redacted here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from offload.models import App, Event, Function, Run, Step, StepStatus
from offload.security.redact import redact_headers


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def step_json(step: Step, next_attempt_at: datetime | None = None) -> dict[str, Any]:
    """A step as the API shows it; ``next_attempt_at`` when it waits for a retry."""
    waiting = step.status is StepStatus.ERRORED
    return {"id": step.id, "name": step.name, "kind": step.kind.value,
            "next_attempt_at": _iso(next_attempt_at) if waiting else None,
            "status": step.status.value, "attempts": step.attempts, "input": step.input,
            "output": step.output, "error": step.error, "started_at": _iso(step.started_at),
            "ended_at": _iso(step.ended_at), "history": step.history}


def run_input(run: Run) -> Any:
    """The run's input with credentials in task headers redacted."""
    value = run.input
    if isinstance(value, dict) and isinstance(value.get("headers"), dict):
        value = {**value, "headers": redact_headers(value["headers"])}
    return value


def _restarts(run: Run) -> list[dict[str, Any]]:
    """Times another engine took the run's work over from one that died or stalled."""
    found = run.state.get("restarts") if isinstance(run.state, dict) else None
    return [r for r in found if isinstance(r, dict)] if isinstance(found, list) else []


def run_json(run: Run, next_attempt_at: datetime | None = None) -> dict[str, Any]:
    """A run as the API shows it; ``steps`` only when loaded.

    ``next_attempt_at`` (from :meth:`Store.run_next_attempts`): when a run waiting for a
    delay, a retry or a sleep is due; shown on the run and on a step waiting to retry.
    """
    body: dict[str, Any] = {
        "id": run.id, "app_id": run.app_id, "function_id": run.function_id,
        "status": run.status.value, "attempt": run.attempt, "event_ids": run.event_ids,
        "queue": run.queue, "input": run_input(run), "output": run.output, "error": run.error,
        "correlation_id": run.correlation_id, "replay_of": run.replay_of, "name": run.name,
        "idempotency_key": run.idempotency_key, "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at), "ended_at": _iso(run.ended_at),
        "next_attempt_at": None if run.status.terminal else _iso(next_attempt_at),
        "restarts": _restarts(run),
    }
    if run.steps is not None:
        body["steps"] = [step_json(s, next_attempt_at) for s in run.steps]
    return body


def event_json(event: Event) -> dict[str, Any]:
    """An event as the API shows it."""
    body = {"id": event.id, "name": event.name, "data": event.data, "user": event.user,
            "ts": event.ts, "v": None, "external_id": event.external_id,
            "correlation_id": event.correlation_id,
            "received_at": _iso(event.received_at)}
    for key, value in (event.extra or {}).items():  # v and any other field the SDK sent
        if key == "v" or key not in body:
            body[key] = value
    return body


def app_json(app: App) -> dict[str, Any]:
    """An app as the API shows it."""
    return {"id": app.id, "url": app.url, "sdk": app.sdk, "framework": app.framework,
            "app_version": app.app_version, "sync_error": app.sync_error,
            "synced_at": _iso(app.synced_at), "created_at": _iso(app.created_at)}


def function_json(function: Function) -> dict[str, Any]:
    """A function as the API shows it (its config as synced)."""
    return {"id": function.id, "app_id": function.app_id, "name": function.name,
            "config": function.config, "updated_at": _iso(function.updated_at)}

"""Operator commands for pause, the audit log and alerts, over the ``/v1`` API.

``offload pause function ID`` / ``offload pause queue NAME`` (and ``resume``),
``offload queues``, ``offload audit`` and ``offload alerts``. Like the other
operator commands they talk to ``OFFLOAD_URL`` with ``OFFLOAD_API_KEY`` and print
tables, or the API's JSON with ``--json``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import click

from offload.cli_ops import api


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console(highlight=False, soft_wrap=False).print(table)


def _switch(verb: str, kind: str, target: str, as_json: bool) -> None:
    path = "functions" if kind == "function" else "queues"
    with api() as client:
        body = client.call("POST", f"/v1/{path}/{quote(target, safe='')}/{verb}")
    if as_json:
        _print_json(body)
        return
    state = "paused" if body.get("paused") else "running"
    click.echo(f"{kind} {target}: {state}")


_KIND = click.Choice(["function", "queue"])


@click.command()
@click.argument("kind", type=_KIND)
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def pause(kind: str, target: str, as_json: bool) -> None:
    """Pause a function or queue: new runs are queued, none starts, in-flight ones finish."""
    _switch("pause", kind, target, as_json)


@click.command()
@click.argument("kind", type=_KIND)
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def resume(kind: str, target: str, as_json: bool) -> None:
    """Resume a function or queue: its backlog starts in order, under its limits."""
    _switch("resume", kind, target, as_json)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def queues(as_json: bool) -> None:
    """Queues with their backlog, in-flight items and pause state."""
    with api() as client:
        body = client.call("GET", "/v1/queues")
    if as_json:
        _print_json(body)
        return
    _table("queues", ["queue", "state", "due", "scheduled", "in flight", "held"],
           [[q["name"], "paused" if q["paused"] else "running", str(q["due"]),
             str(q["scheduled"]), str(q["in_flight"]), str(q["held"])] for q in body["data"]])


@click.command()
@click.option("--action", default=None, help="Only this action (e.g. run.cancel).")
@click.option("--actor", default=None, help="Only this actor (key id or name).")
@click.option("--target", "target_id", default=None, help="Only this target (e.g. a run id).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def audit(action: str | None, actor: str | None, target_id: str | None, limit: int,
          as_json: bool) -> None:
    """The audit log of operator actions, newest first."""
    params = {k: v for k, v in (("action", action), ("actor", actor),
                                ("target_id", target_id)) if v}
    with api() as client:
        body = client.call("GET", "/v1/audit", params={**params, "limit": limit})
    if as_json:
        _print_json(body)
        return
    _table("audit log", ["at", "actor", "action", "target", "outcome", "request id"],
           [[e["at"][:19], f"{e['actor']['kind']}:{e['actor']['name'] or e['actor']['id']}",
             e["action"], e["target"]["id"] or "—", e["outcome"], e["request_id"] or "—"]
            for e in body["data"]])


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_context
def alerts(ctx: click.Context, as_json: bool) -> None:
    """Alert rules and whether each is firing (``alerts create|delete|events``)."""
    if ctx.invoked_subcommand is not None:
        return
    with api() as client:
        body = client.call("GET", "/v1/alerts")
    if as_json:
        _print_json(body)
        return
    _table("alerts", ["id", "name", "kind", "source", "state", "since", "now"],
           [[r["id"], r["name"], r["kind"], r["source"], r["state"]["status"],
             (r["state"]["since"] or "—")[:19], r["state"]["message"] or "—"]
            for r in body["data"]])


@alerts.command("create")
@click.option("--name", required=True, help="Unique name.")
@click.option("--kind", required=True, type=click.Choice(
    ["failure_rate", "dead_letter_growth", "oldest_due", "cron_missed"]))
@click.option("--threshold", required=True, type=float,
              help="A fraction (failure_rate), runs (dead_letter_growth) or seconds.")
@click.option("--url", required=True, help="Receives the signed notifications.")
@click.option("--function", "function_id", default=None, help="Only this function.")
@click.option("--queue", default=None, help="Only this queue.")
@click.option("--window", "window_s", default=None, type=int, help="Window in seconds.")
@click.option("--min-runs", "min_runs", default=None, type=int,
              help="failure_rate: quiet until this many runs ended in the window.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def alerts_create(as_json: bool, **fields: Any) -> None:
    """Create an alert rule (POST /v1/alerts)."""
    body = {k: v for k, v in fields.items() if v is not None}
    with api() as client:
        made = client.call("POST", "/v1/alerts", json=body)
    if as_json:
        _print_json(made)
        return
    click.echo(f"created alert rule {made['id']} ({made['name']})")


@alerts.command("delete")
@click.argument("rule_id")
def alerts_delete(rule_id: str) -> None:
    """Delete an alert rule made through the API."""
    with api() as client:
        client.call("DELETE", f"/v1/alerts/{quote(rule_id, safe='')}")
    click.echo(f"deleted alert rule {rule_id}")


@alerts.command("events")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def alerts_events(limit: int, as_json: bool) -> None:
    """Recent firings and resolvings, with the run delivering each notification."""
    with api() as client:
        body = client.call("GET", "/v1/alerts/events", params={"limit": limit})
    if as_json:
        _print_json(body)
        return
    _table("alert events", ["at", "rule", "status", "what", "notification run"],
           [[e["at"][:19], e["rule_name"], e["status"], e["message"], e["run_id"] or "—"]
            for e in body["data"]])


COMMANDS = (pause, resume, queues, audit, alerts)
"""Added to the ``offload`` group by :mod:`offload.cli`."""

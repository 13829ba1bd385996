"""Operator commands over the ``/v1`` API: ``tasks``, ``events``, ``runs``, ``apps``.

Each prints for people (rich tables and trees) or, with ``--json``, the API's JSON
for scripts. The engine is ``OFFLOAD_URL`` (default ``http://127.0.0.1:8288``) and
the key ``OFFLOAD_API_KEY``. Problems reaching the engine or with the key become one
line on stderr and exit status 1 (see :func:`friendly_error`), never a traceback.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import click
import httpx

from offload.errors import ClientError

DEFAULT_URL = "http://127.0.0.1:8288"
TERMINAL = ("completed", "failed", "cancelled")
_STYLE = {"completed": "green", "failed": "red", "cancelled": "bright_black",
          "running": "blue", "queued": "cyan", "sleeping": "magenta", "waiting": "magenta",
          "errored": "yellow", "planned": "cyan"}


# -- talking to the engine ---------------------------------------------------------------------

def engine_url() -> str:
    """The engine the commands talk to."""
    return os.environ.get("OFFLOAD_URL", DEFAULT_URL).rstrip("/")


class Api:
    """A thin blocking wrapper over the ``/v1`` API (non-2xx answers raise ClientError)."""

    def __init__(self, base_url: str, api_key: str | None, *, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON answer of ``method path``."""
        response = self.http.request(method, path, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            raise ClientError(response.status_code, body)
        return body

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()


@contextmanager
def api(timeout: float = 30.0) -> Iterator[Api]:
    """An :class:`Api` for ``OFFLOAD_URL`` / ``OFFLOAD_API_KEY``, closed afterwards."""
    client = Api(engine_url(), os.environ.get("OFFLOAD_API_KEY") or None, timeout=timeout)
    try:
        yield client
    finally:
        client.close()


def friendly_error(exc: BaseException) -> str | None:
    """One line explaining ``exc`` if it is a problem talking to the engine, else None."""
    url = engine_url()
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return (f"cannot reach the offload engine at {url} ({_reason(exc)}); start it with "
                "`offload dev`, or set OFFLOAD_URL to where it runs")
    if isinstance(exc, httpx.TimeoutException):
        return f"the offload engine at {url} did not answer in time"
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return f"OFFLOAD_URL={url!r} is not an http(s) URL"
    if isinstance(exc, httpx.HTTPError):
        return f"talking to the offload engine at {url} failed: {_reason(exc)}"
    # offload.Client's own transports raise the standard library's errors.
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"the offload engine at {url} did not answer in time"
    if isinstance(exc, ConnectionRefusedError | socket.gaierror):
        return (f"cannot reach the offload engine at {url} ({_reason(exc)}); start it with "
                "`offload dev`, or set OFFLOAD_URL to where it runs")
    if isinstance(exc, OSError | http.client.HTTPException):
        return f"talking to the offload engine at {url} failed: {_reason(exc)}"
    if isinstance(exc, ValueError) and str(exc).startswith("base_url must be"):
        return f"OFFLOAD_URL={url!r} is not an http(s) URL"
    if isinstance(exc, ClientError):
        detail = _problem_text(exc.body)
        if exc.status == 401:
            return (f"the engine at {url} refused the API key (HTTP 401): set OFFLOAD_API_KEY "
                    "to a valid key" + (f" — {detail}" if detail else ""))
        if exc.status == 403:
            return ("the API key may not do this (HTTP 403): use an admin key"
                    + (f" — {detail}" if detail else ""))
        return f"HTTP {exc.status}: {detail or 'the engine refused the request'}"
    return None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if "refused" in text.lower():
        return "connection refused"
    return text.splitlines()[0][:200]


def _problem_text(body: Any) -> str:
    if isinstance(body, dict):
        parts = [str(body.get("title") or body.get("detail") or body.get("error") or "")]
        for error in body.get("errors") or []:
            if isinstance(error, dict):
                parts.append(f"{error.get('field', '')}: {error.get('message', '')}")
        return "; ".join(p for p in parts if p)
    return str(body or "")[:300]


# -- output helpers ----------------------------------------------------------------------------

def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _status(status: str) -> str:
    return f"[{_STYLE.get(status, 'white')}]{status}[/]"


def _when(value: str | None) -> str:
    if not value:
        return "—"
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return value


def _duration(start: str | None, end: str | None) -> str:
    if not start or not end:
        return ""
    try:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return ""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def what(run: dict[str, Any]) -> str:
    """What a run does: the function, or ``METHOD host/path`` (and name) for HTTP tasks."""
    if run.get("function_id") != "http":
        return str(run.get("function_id"))
    task = run.get("input") if isinstance(run.get("input"), dict) else {}
    assert isinstance(task, dict)
    parts = urlsplit(str(task.get("url") or ""))
    label = f"{task.get('method') or 'POST'} {parts.netloc}{parts.path or '/'}"
    name = run.get("name") or task.get("name")
    return f"{name} ({label})" if name else label


def _error_line(error: Any) -> str:
    if not isinstance(error, dict):
        return ""
    return f"{error.get('name') or 'Error'}: {error.get('message') or ''}".strip()


def _json_arg(value: str | None, field: str) -> Any:
    """A JSON option value; ``@path`` reads a file, ``-`` standard input."""
    if value is None:
        return None
    if value == "-":
        value = sys.stdin.read()
    elif value.startswith("@"):
        try:
            with open(value[1:], encoding="utf-8") as handle:
                value = handle.read()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {value[1:]}: {exc.strerror}",
                                     param_hint=field) from None
    try:
        return json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"is not valid JSON: {exc}", param_hint=field) from None


# -- tasks -------------------------------------------------------------------------------------

@click.group()
def tasks() -> None:
    """Create HTTP tasks (OFFLOAD_URL, OFFLOAD_API_KEY)."""


@tasks.command("create")
@click.argument("url")
@click.option("--method", "-X", type=click.Choice(["GET", "POST", "PUT", "PATCH", "DELETE"],
              case_sensitive=False), default=None, help="HTTP method (default POST).")
@click.option("--body", "-d", default=None,
              help="JSON body; a string needs quotes ('\"text\"'). @file reads a file, - stdin.")
@click.option("--header", "-H", "headers", multiple=True, metavar="'NAME: VALUE'",
              help="A header sent to the target (repeatable).")
@click.option("--name", default=None, help="A label for the task, filterable in runs.")
@click.option("--queue", default=None, help="Queue name (default 'default').")
@click.option("--retries", type=int, default=None, help="Retries after the first attempt.")
@click.option("--timeout", type=float, default=None, help="Seconds for one attempt.")
@click.option("--delay", type=float, default=None, help="Seconds before the first attempt.")
@click.option("--callback-url", default=None, help="Receives the outcome, signed.")
@click.option("--idempotency-key", default=None, help="A repeat within 24 h returns the first.")
@click.option("--wait", is_flag=True, help="Wait until the run ends and show its outcome.")
@click.option("--wait-timeout", type=float, default=300.0, show_default=True,
              help="Seconds to wait with --wait.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def tasks_create(url: str, method: str | None, body: str | None, headers: tuple[str, ...],
                 name: str | None, queue: str | None, retries: int | None,
                 timeout: float | None, delay: float | None, callback_url: str | None,
                 idempotency_key: str | None, wait: bool, wait_timeout: float,
                 as_json: bool) -> None:
    """Queue an HTTP call to URL; with --wait, follow it to its end (exit 1 if it failed)."""
    spec: dict[str, Any] = {"url": url}
    if method:
        spec["method"] = method.upper()
    if body is not None:
        spec["body"] = _json_arg(body, "--body")
    if headers:
        spec["headers"] = dict(_header(h) for h in headers)
    for key, value in (("name", name), ("queue", queue), ("retries", retries),
                       ("timeout", timeout), ("delay", delay), ("callback_url", callback_url),
                       ("idempotency_key", idempotency_key)):
        if value is not None:
            spec[key] = value
    with api() as client:
        accepted = client.call("POST", "/v1/tasks", json=spec)
        if not wait:
            if as_json:
                _print_json(accepted)
            else:
                note = " (duplicate: the first run)" if accepted.get("duplicate") else ""
                click.echo(f"{accepted['id']} {accepted['status']}{note}")
            return
        run = _wait(client, accepted["id"], wait_timeout)
    _show_outcome(run, as_json)


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise click.BadParameter(f"{text!r} is not 'NAME: VALUE'", param_hint="--header")
    return name.strip(), value.strip()


def _wait(client: Api, run_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        left = max(0.0, deadline - time.monotonic())
        run: dict[str, Any] = client.call("GET", f"/v1/runs/{run_id}/wait",
                                          params={"timeout": min(left, 25.0)},
                                          timeout=min(left, 25.0) + 10)
        if run.get("status") in TERMINAL or time.monotonic() >= deadline:
            return run


def _show_outcome(run: dict[str, Any], as_json: bool) -> None:
    status = str(run.get("status"))
    if as_json:
        _print_json(run)
    else:
        console = _console()
        console.print(f"{run['id']} {_status(status)}  {what(run)}")
        if run.get("error"):
            console.print(f"  [red]{_error_line(run['error'])}[/]", markup=True)
        elif run.get("output") is not None:
            console.print(json.dumps(run["output"], indent=2, ensure_ascii=False),
                          markup=False)
    if status not in TERMINAL:
        raise click.ClickException(f"run {run['id']} is still {status} (wait timed out)")
    if status != "completed":
        sys.exit(1)


# -- events ------------------------------------------------------------------------------------

@click.group()
def events() -> None:
    """Send events (OFFLOAD_URL, OFFLOAD_API_KEY)."""


@events.command("send")
@click.argument("name")
@click.option("--data", "-d", default=None,
              help="JSON object for event.data; @file reads a file, - stdin.")
@click.option("--id", "event_id", default=None, help="Deduplication id.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def events_send(name: str, data: str | None, event_id: str | None, as_json: bool) -> None:
    """Send the event NAME; prints its id."""
    event: dict[str, Any] = {"name": name, "data": _json_arg(data, "--data") or {}}
    if event_id:
        event["id"] = event_id
    with api() as client:
        answer = client.call("POST", "/v1/events", json=event)
    if as_json:
        _print_json(answer)
    else:
        for sent in answer.get("ids", []):
            click.echo(sent)


# -- runs --------------------------------------------------------------------------------------

def list_runs(status: str | None, function_id: str | None, name: str | None, limit: int,
              as_json: bool) -> None:
    """Print recent runs as a table (or JSON)."""
    params = {k: v for k, v in (("status", status), ("function_id", function_id),
                                ("name", name), ("limit", limit)) if v is not None}
    with api() as client:
        page = client.call("GET", "/v1/runs", params=params)
    if as_json:
        _print_json(page)
        return
    from rich.table import Table

    console = _console()
    wide = console.width >= 110  # narrow terminals: the error column goes first
    table = Table(box=None, header_style="bold")
    table.add_column("run", no_wrap=True, min_width=26)
    table.add_column("status", no_wrap=True, min_width=9)
    table.add_column("what", overflow="fold", min_width=20)
    table.add_column("created (UTC)", no_wrap=True, min_width=19)
    if wide:
        table.add_column("error", overflow="ellipsis", no_wrap=True, max_width=50)
    for run in page["data"]:
        cells = [run["id"], _status(run["status"]), what(run), _when(run["created_at"])]
        table.add_row(*cells, *([_error_line(run.get("error"))[:80]] if wide else []))
    console.print(table)


@click.group(invoke_without_command=True)
@click.option("--status", default=None, help="Filter by status, e.g. failed.")
@click.option("--function", "function_id", default=None)
@click.option("--name", default=None, help="Only HTTP tasks with this name.")
@click.option("--limit", type=int, default=20)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def runs(ctx: click.Context, status: str | None, function_id: str | None, name: str | None,
         limit: int, as_json: bool) -> None:
    """List recent runs, or `runs show ID` / `runs tail` (OFFLOAD_URL, OFFLOAD_API_KEY)."""
    if ctx.invoked_subcommand is None:
        list_runs(status, function_id, name, limit, as_json)


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
def runs_show(run_id: str, as_json: bool) -> None:
    """One run: its outcome, and its steps with every attempt as a tree."""
    with api() as client:
        run = client.call("GET", f"/v1/runs/{run_id}")
    if as_json:
        _print_json(run)
        return
    _console().print(run_tree(run))


def run_tree(run: dict[str, Any]) -> Any:
    """A rich Tree: the run, its steps, each step's attempts (when the API has them)."""
    from rich.markup import escape
    from rich.tree import Tree

    head = (f"[bold]{run['id']}[/] {_status(run['status'])}  {escape(what(run))}  "
            f"attempt {run.get('attempt', 0)}  "
            f"[dim]{_when(run.get('created_at'))} · "
            f"{_duration(run.get('started_at'), run.get('ended_at')) or 'not ended'}[/]")
    tree = Tree(head)
    if run.get("replay_of"):
        tree.add(f"[dim]replay of {run['replay_of']}[/]")
    restarts = run.get("restarts")
    if isinstance(restarts, list) and restarts:
        node = tree.add(f"[yellow]lived through {len(restarts)} engine restart(s)[/]")
        for restart in restarts:
            if isinstance(restart, dict):
                node.add(f"[dim]{_when(restart.get('at'))} UTC: work taken over[/]")
    for step in run.get("steps") or []:
        label = (f"{_status(step['status'])} [bold]{escape(str(step.get('name') or step['id']))}"
                 f"[/] [dim]{step.get('kind', '')} · {step.get('attempts', 0)} attempt(s)"
                 f" · {_duration(step.get('started_at'), step.get('ended_at'))}[/]")
        node = tree.add(label)
        history = step.get("history")
        for n, attempt in enumerate(history if isinstance(history, list) else [], start=1):
            if not isinstance(attempt, dict):
                continue
            number = attempt.get("attempt", n)
            line = (f"attempt {number}: {_status(str(attempt.get('status', '')))} "
                    f"[dim]{_duration(attempt.get('started_at'), attempt.get('ended_at'))}[/]")
            if attempt.get("error"):
                line += f"  [red]{escape(_error_line(attempt['error']))}[/]"
            node.add(line)
        if not history and step.get("error"):
            node.add(f"[red]{escape(_error_line(step['error']))}[/]")
    if run.get("error"):
        tree.add(f"[red]error: {escape(_error_line(run['error']))}[/]")
    elif run.get("output") is not None:
        text = json.dumps(run["output"], ensure_ascii=False)
        tree.add(f"output: {escape(text[:400])}" + ("…" if len(text) > 400 else ""))
    return tree


@runs.command("tail")
@click.option("--function", "function_id", default=None, help="Only this function.")
@click.option("--status", default=None, help="Only runs in this status.")
@click.option("--interval", type=float, default=1.0, show_default=True,
              help="Seconds between polls.")
@click.option("--json", "as_json", is_flag=True, help="One JSON run per line.")
def runs_tail(function_id: str | None, status: str | None, interval: float,
              as_json: bool) -> None:
    """Follow runs: print each new run, and again when it ends (Ctrl-C stops)."""
    params = {k: v for k, v in (("function_id", function_id), ("status", status),
                                ("limit", 100)) if v is not None}
    from rich.markup import escape

    console = _console()
    seen: dict[str, str] = {}
    with api() as client:
        first = True
        try:
            while True:
                page = client.call("GET", "/v1/runs", params=params)
                for run in reversed(page["data"]):  # oldest first
                    before = seen.get(run["id"])
                    seen[run["id"]] = run["status"]
                    if first or before == run["status"]:
                        continue
                    if before is not None and run["status"] not in TERMINAL:
                        continue
                    if as_json:
                        click.echo(json.dumps(run, ensure_ascii=False))
                    else:
                        error = _error_line(run.get("error"))
                        stamp = _when(run.get("ended_at") or run["created_at"])
                        console.print(f"{stamp}  {run['id']}  {_status(run['status'])}  "
                                      f"{escape(what(run))}"
                                      + (f"  [red]{escape(error[:80])}[/]" if error else ""))
                if first and not as_json:
                    console.print(f"[dim]following runs on {engine_url()} (Ctrl-C stops)[/]")
                first = False
                if len(seen) > 10_000:
                    seen = {run["id"]: run["status"] for run in page["data"]}
                time.sleep(interval)
        except KeyboardInterrupt:
            return


# -- apps --------------------------------------------------------------------------------------

@click.group()
def apps() -> None:
    """Sync and list Inngest SDK apps (OFFLOAD_URL, OFFLOAD_API_KEY)."""


@apps.command("sync")
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def apps_sync(url: str, as_json: bool) -> None:
    """Register (or resync) the app serving at URL, e.g. http://localhost:3000/api/inngest."""
    with api(timeout=60) as client:
        app = client.call("POST", "/v1/apps", json={"url": url})
    if as_json:
        _print_json(app)
        return
    functions = app.get("functions") or []
    click.echo(f"synced {app.get('id')}: {len(functions)} function(s)")
    for fn in functions:
        click.echo(f"  {fn.get('id')}")


@apps.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def apps_list(as_json: bool) -> None:
    """Apps with their URL and sync state."""
    with api() as client:
        page = client.call("GET", "/v1/apps")
    if as_json:
        _print_json(page)
        return
    for app in page.get("data", []):
        state = "error: " + str(app["sync_error"]) if app.get("sync_error") else "synced"
        click.echo(f"{app['id']}  {app['url']}  {state}")


# -- engines -----------------------------------------------------------------------------------

@click.command("engines")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def engines(as_json: bool) -> None:
    """Engine processes sharing the database: alive or missing, pid, leases held."""
    with api() as client:
        page = client.call("GET", "/v1/engines")
    if as_json:
        _print_json(page)
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("engine", "state", "host", "pid", "version", "started (UTC)", "leases",
                   "last heartbeat (UTC)"):
        table.add_column(column, no_wrap=column != "engine", overflow="fold")
    for e in page["data"]:
        state = "[green]alive[/]" if e["alive"] else "[red]missing[/]"
        table.add_row(e["id"], state, e["host"], str(e["pid"]), e["version"],
                      _when(e["started_at"]), str(e["leases"]), _when(e["heartbeat_at"]))
    _console().print(table)

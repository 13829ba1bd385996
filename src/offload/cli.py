"""The ``offload`` command: run the engine, migrate, manage keys, operate on runs."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from offload import __version__, cli_admin, cli_inbound, cli_ops
from offload.config import Settings, from_env
from offload.errors import ConfigError, OffloadError

F = TypeVar("F", bound=Callable[..., Any])


def _engine_options(func: F) -> F:
    options = [
        click.option("--host", default=None, help="Address to bind (default 127.0.0.1)."),
        click.option("--port", type=int, default=None, help="Port (default 8288)."),
        click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                     help="Where the SQLite file and generated secrets live (default ./.offload)."),
        click.option("--database-url", default=None,
                     help="sqlite:///path or postgresql://… (env OFFLOAD_DATABASE_URL)."),
        click.option("--node-id", default=None,
                     help="This host's identity; a restart takes back its leases at once "
                          "(env OFFLOAD_NODE_ID; default: generated in the data dir)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _settings(mode: str, **flags: Any) -> Settings:
    from offload.engine.alerts import settings_rules

    try:
        settings = from_env(mode=mode, **flags)
        settings_rules(settings.alert_rules)  # the alert rules' owner checks them
        return settings
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _serve(settings: Settings, sockets: list[Any] | None = None,
           run_scheduler: bool = True) -> None:
    """Run the engine under uvicorn (on ``sockets`` when a parent opened them).

    ``run_scheduler=False``: an API front of ``serve --workers``, claiming no work."""
    import uvicorn

    from offload.app import create_app
    from offload.logging import configure

    configure(settings.log_level)
    app = create_app(settings, run_scheduler=run_scheduler)
    # Forwarded headers only from the proxies named in settings (uvicorn would otherwise
    # believe any loopback peer, letting a local client choose its own address).
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                            access_log=False, loop="auto", http="auto",
                            timeout_graceful_shutdown=10,
                            proxy_headers=bool(settings.trusted_proxies),
                            forwarded_allow_ips=list(settings.trusted_proxies) or None)
    uvicorn.Server(config).run(sockets=sockets)


def _execute(settings: Settings) -> None:
    """The executor of ``serve --workers``: claims and runs work, serves no HTTP."""
    import signal

    from offload.engine import Engine
    from offload.logging import configure

    configure(settings.log_level)
    # The SQLite writer thread holds the file's write lock while it waits for the GIL,
    # which the busy event loop holds up to the switch interval (5 ms): fronts waited
    # on that. 0.5 ms: send p50 with 1,000 runs in flight 4.2-4.5 ms, was 6.2-6.6 ms
    # (bench/send_inflight.py --workers 2), runs per second unchanged.
    sys.setswitchinterval(0.0005)

    async def execute() -> None:
        engine = Engine(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await engine.start()
        try:
            await stop.wait()
        finally:
            await engine.stop()

    try:
        import uvloop
    except ImportError:
        asyncio.run(execute())
    else:
        uvloop.run(execute())


class _Main(click.Group):
    """The ``offload`` group: problems reaching the engine become one line, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from offload.cli_ops import friendly_error

        try:
            return super().invoke(ctx)
        except Exception as exc:  # noqa: BLE001 - re-raised unless it has a friendly line
            message = friendly_error(exc)
            if message is None:
                raise
            raise click.ClickException(message) from None


@click.group(cls=_Main)
@click.version_option(__version__, prog_name="offload")
def main() -> None:
    """offload: durable background jobs and workflows, self-hosted."""


@main.command()
@_engine_options
@click.option("-u", "--sdk-url", "sdk_urls", multiple=True, metavar="URL",
              help="An Inngest SDK app's serve URL (e.g. http://localhost:3000/api/inngest) to "
                   "sync at start and again whenever it comes back after a restart "
                   "(repeatable).")
def dev(sdk_urls: tuple[str, ...], **flags: Any) -> None:
    """Run a development engine: SQLite, loopback, no authentication."""
    settings = _settings("dev", **flags)
    click.echo(f"offload {__version__} dev server")
    click.echo(f"  Dashboard: {settings.base_url}/   (API docs: {settings.base_url}/docs)")
    click.echo(f"  Database:  {_safe_db(settings.resolved_database_url())}")
    click.echo(f"  Inngest SDK apps: INNGEST_DEV={settings.base_url}")
    click.secho("  WARNING: running WITHOUT authentication, for local development only. "
                "Use `offload serve` in production.", fg="yellow", bold=True)
    if sdk_urls:
        from offload.devsync import AppWatcher

        for url in sdk_urls:
            click.echo(f"  Syncing app: {url} (again after each restart)")
        wildcard = settings.host in ("0.0.0.0", "::", "")
        engine_url = f"http://127.0.0.1:{settings.port}" if wildcard else settings.base_url
        AppWatcher(engine_url, list(sdk_urls),
                   say=lambda line: click.echo(line, err=True)).start()
    _serve(settings)


@main.command()
@_engine_options
@click.option("--insecure", is_flag=True, default=None,
              help="Run without API keys (not recommended).")
@click.option("--workers", type=int, default=None, envvar="OFFLOAD_WORKERS",
              help="Processes: above 1, API processes sharing the port beside the "
                   "executor(s) (default: the number of cores; 1: one process does all).")
@click.option("--executors", type=int, default=1, show_default=True,
              envvar="OFFLOAD_EXECUTORS",
              help="Of --workers, how many claim and run work (above 1 needs PostgreSQL).")
def serve(workers: int | None, executors: int, **flags: Any) -> None:
    """Run a production engine. Refuses to run without API keys unless --insecure."""
    from offload import workers as worker_pool

    settings = _settings("serve", **flags)
    if workers is None:
        workers = worker_pool.default_workers()
    try:
        worker_pool.check_workers(workers, executors, settings.resolved_database_url())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if not settings.insecure and not settings.api_keys and not _store_has_keys(settings):
        raise click.ClickException(
            "no API keys: create one with `offload keys create --scope admin` or set "
            "OFFLOAD_API_KEYS, or pass --insecure to run open")
    if settings.insecure:
        click.secho("WARNING: --insecure: the API answers without authentication.",
                    fg="yellow", bold=True, err=True)
    click.echo(f"offload {__version__} serving on {settings.base_url}"
               + (f" with {workers - executors} API and {executors} executor processes"
                  if workers > 1 else ""))
    if workers > 1:
        sys.exit(worker_pool.run(settings, workers, _serve, _execute, executors))
    _serve(settings)


def _safe_db(url: str) -> str:
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except OffloadError as exc:
        raise click.ClickException(str(exc)) from None


async def _with_store(settings: Settings, fn: Callable[[Any], Any]) -> Any:
    from offload.store import open_store

    store = open_store(settings.resolved_database_url())
    await store.open()
    try:
        return await fn(store)
    finally:
        await store.close()


def _store_has_keys(settings: Settings) -> bool:
    async def check(store: Any) -> bool:
        return any(k.revoked_at is None for k in await store.api_key_list())
    return bool(_run(_with_store(settings, check)))


@main.command()
@_engine_options
def migrate(**flags: Any) -> None:
    """Apply pending database migrations and exit."""
    settings = _settings("serve", **flags)

    async def noop(store: Any) -> None:
        return None
    _run(_with_store(settings, noop))
    click.echo(f"migrated {_safe_db(settings.resolved_database_url())}")


@main.group()
def keys() -> None:
    """Manage API keys (stored hashed; the secret is shown once)."""


@keys.command("create")
@click.option("--scope", type=click.Choice(["ingest", "admin"]), required=True)
@click.option("--name", default="", help="A label to recognise the key by.")
@_engine_options
def keys_create(scope: str, name: str, **flags: Any) -> None:
    """Create an API key and print its secret once."""
    from offload.clock import now
    from offload.ids import new_id
    from offload.models import ApiKey
    from offload.security import api_keys

    settings = _settings("serve", **flags)
    secret = api_keys.generate(scope)  # type: ignore[arg-type]
    key = ApiKey(id=new_id(), name=name or scope, scope=scope, created_at=now())

    async def insert(store: Any) -> None:
        from offload.engine.audit import cli_actor, record_audit

        await store.api_key_insert(key=key, key_hash=api_keys.hash_key(secret))
        await record_audit(store, actor=cli_actor(), action="key.create",
                           target_kind="api_key", target_id=key.id,
                           details={"scope": scope, "name": key.name})
    _run(_with_store(settings, insert))
    click.echo(f"key id: {key.id}  scope: {scope}")
    click.echo(secret)
    click.echo("Store this secret now: it is not shown again.", err=True)


@keys.command("list")
@_engine_options
def keys_list(**flags: Any) -> None:
    """List API keys (never their secrets)."""
    settings = _settings("serve", **flags)

    async def fetch(store: Any) -> Any:
        return await store.api_key_list()
    for key in _run(_with_store(settings, fetch)):
        state = "revoked" if key.revoked_at else "active"
        click.echo(f"{key.id}  {key.scope:<6}  {state:<7}  {key.name}")


@keys.command("revoke")
@click.argument("key_id")
@_engine_options
def keys_revoke(key_id: str, **flags: Any) -> None:
    """Revoke an API key."""
    from offload.clock import now

    settings = _settings("serve", **flags)

    async def revoke(store: Any) -> bool:
        from offload.engine.audit import cli_actor, record_audit

        revoked = bool(await store.api_key_revoke(key_id=key_id, at=now()))
        if revoked:
            await record_audit(store, actor=cli_actor(), action="key.revoke",
                               target_kind="api_key", target_id=key_id)
        return revoked
    if not _run(_with_store(settings, revoke)):
        raise click.ClickException(f"no active key {key_id}")
    click.echo(f"revoked {key_id}")


# -- operator commands over the HTTP API ---------------------------------------------------

def _client() -> Any:
    from offload.client import Client

    url = os.environ.get("OFFLOAD_URL", "http://127.0.0.1:8288")
    return Client(url, api_key=os.environ.get("OFFLOAD_API_KEY"))


for _group in (cli_ops.tasks, cli_ops.events, cli_ops.runs, cli_ops.apps,
               cli_inbound.secrets, cli_inbound.webhooks):
    main.add_command(_group)
main.add_command(cli_ops.engines)
for _command in cli_admin.COMMANDS:  # pause, resume, queues, audit, alerts
    main.add_command(_command)


def _filter_options(func: F) -> F:
    options = [
        click.option("--status", multiple=True, help="Only runs in this status (repeatable)."),
        click.option("--function", "function_id", default=None, help="Only this function."),
        click.option("--queue", default=None, help="Only this queue."),
        click.option("--after", default=None, help="Created at or after (RFC 3339)."),
        click.option("--before", default=None, help="Created before (RFC 3339)."),
        click.option("--search", "q", default=None, help="Run id or error text."),
        click.option("--name", default=None, help="Only HTTP tasks with this name."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _bulk(action: str, filters: dict[str, Any]) -> None:
    """Start a bulk job and follow it with a progress bar until it ends."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    selected = {k: (list(v) if isinstance(v, tuple) else v) for k, v in filters.items()
                if v not in (None, (), [])}
    if "status" in selected:
        selected["status"] = [s for chunk in selected["status"] for s in chunk.split(",")]
    with _client() as client:
        try:
            job = client.start_bulk(action, **selected)
            columns = ("[progress.description]{task.description}", BarColumn(),
                       MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, transient=False) as progress:
                bar = progress.add_task(f"{action} {job['id']}", total=job["total"] or None)
                while True:
                    progress.update(bar, completed=job["done"] + job["skipped"])
                    if job["status"] != "running":
                        break
                    time.sleep(0.3)
                    job = client.get_bulk(job["id"])
        except OffloadError as exc:
            raise click.ClickException(str(exc)) from None
    verb = "replayed" if action == "replay" else "cancelled"
    click.echo(f"{job['status']}: {job['done']} of {job['total']} runs {verb}"
               + (f", {job['skipped']} skipped (already ended)" if job["skipped"] else ""))
    if job["status"] == "failed":
        raise click.ClickException(job.get("error") or "bulk job failed")


@main.command()
@click.argument("run_id", required=False)
@_filter_options
def cancel(run_id: str | None, **filters: Any) -> None:
    """Cancel one run, or every run the filters select (with a progress bar)."""
    if run_id is None:
        if not any(v for v in filters.values()):
            raise click.UsageError("give a RUN_ID or at least one filter (e.g. --status queued)")
        _bulk("cancel", filters)
        return
    with _client() as client:
        try:
            run = client.cancel_run(run_id)
        except OffloadError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"{run['id']} {run['status']}")


@main.command()
@click.argument("run_id", required=False)
@_filter_options
@click.option("--include-replayed", is_flag=True,
              help="Replay runs already replayed too (by default they are left out).")
def replay(run_id: str | None, include_replayed: bool, **filters: Any) -> None:
    """Replay one run, or every run the filters select (e.g. --status failed)."""
    if run_id is None:
        if not any(v for v in filters.values()):
            raise click.UsageError("give a RUN_ID or at least one filter (e.g. --status failed)")
        _bulk("replay", {**filters, "exclude_replayed": not include_replayed or None})
        return
    with _client() as client:
        try:
            run = client.replay_run(run_id)
        except OffloadError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"{run['id']} replays {run_id}")


# -- dashboard ---------------------------------------------------------------------------------

@main.group()
def dashboard() -> None:
    """Dashboard administration."""


@dashboard.command("hash-password")
@click.option("--stdin", "from_stdin", is_flag=True,
              help="Read the password from the first line of standard input.")
def dashboard_hash_password(from_stdin: bool) -> None:
    """Print a scrypt hash for OFFLOAD_DASHBOARD_PASSWORD_HASH (format scrypt$n$r$p$salt$hash)."""
    from offload.security.passwords import hash_password

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Dashboard password", hide_input=True,
                                confirmation_prompt=True)
    if len(password) < 8:
        raise click.ClickException("use a password of at least 8 characters")
    click.echo(hash_password(password))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

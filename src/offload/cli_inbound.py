"""Operator commands for stored secrets and inbound webhooks, over the ``/v1`` API.

``offload secrets set NAME VALUE`` (or ``--from-stdin``), ``offload secrets list``,
``offload secrets delete NAME``; ``offload webhooks list`` and ``offload webhooks
create NAME --kind …``. Like the other operator commands they talk to
``OFFLOAD_URL`` with ``OFFLOAD_API_KEY`` (an admin key) and print tables, or the
API's JSON with ``--json``. Values are read, sent and never printed back.
"""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import quote

import click

from offload.cli_ops import api

_KINDS = click.Choice(["stripe", "github", "standard", "hmac", "token", "none"])


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _table(columns: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console(highlight=False, soft_wrap=False).print(table)


@click.group()
def secrets() -> None:
    """Stored secrets that HTTP tasks reference as {{ secrets.NAME }}."""


@secrets.command("set")
@click.argument("name")
@click.argument("value", required=False)
@click.option("--from-stdin", is_flag=True, help="Read the value from standard input (keeps "
              "it out of the shell history).")
def secrets_set(name: str, value: str | None, from_stdin: bool) -> None:
    """Create or replace a secret."""
    if from_stdin:
        value = sys.stdin.read().rstrip("\r\n")
    if not value:
        raise click.UsageError("give VALUE or --from-stdin")
    with api() as client:
        body = client.call("PUT", f"/v1/secrets/{quote(name, safe='')}", json={"value": value})
    click.echo(f"secret {body['name']} stored; reference it as {body['reference']}")


@secrets.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def secrets_list(as_json: bool) -> None:
    """Names and dates of the stored secrets (never their values)."""
    with api() as client:
        body = client.call("GET", "/v1/secrets")
    if as_json:
        _print_json(body)
        return
    _table(["Name", "Reference", "Updated (UTC)"],
           [[s["name"], s["reference"], s["updated_at"][:19]] for s in body["data"]])


@secrets.command("delete")
@click.argument("name")
def secrets_delete(name: str) -> None:
    """Remove a secret (tasks referencing it then fail their next attempt)."""
    with api() as client:
        client.call("DELETE", f"/v1/secrets/{quote(name, safe='')}")
    click.echo(f"secret {name} deleted")


@click.group()
def webhooks() -> None:
    """Inbound provider webhooks (/w/{id}): verified, acknowledged, continued durably."""


@webhooks.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def webhooks_list(as_json: bool) -> None:
    """Every webhook with its URL, verification and event name."""
    with api() as client:
        body = client.call("GET", "/v1/webhooks")
    if as_json:
        _print_json(body)
        return
    _table(["Id", "Name", "Kind", "URL", "Event", "Forward to"],
           [[w["id"], w["name"], w["verify"]["kind"], w["url"], w["event"],
             (w["forward"] or {}).get("url", "—")] for w in body["data"]])


@webhooks.command("create")
@click.argument("name")
@click.option("--kind", type=_KINDS, required=True, help="How deliveries are verified.")
@click.option("--secret", default=None, help="The signing secret (Stripe: required); "
              "generated and shown once when omitted.")
@click.option("--event", default=None, help="Event name template, e.g. 'stripe/{{ type }}'.")
@click.option("--header", default=None, help="hmac: the signature header; token: the header "
              "holding the token.")
@click.option("--algorithm", type=click.Choice(["sha256", "sha1", "sha512"]), default=None)
@click.option("--encoding", type=click.Choice(["hex", "base64"]), default=None)
@click.option("--id-header", default=None, help="The sender's delivery id header (dedupe).")
@click.option("--forward-url", default=None, help="Also send each delivery there as a task.")
@click.option("--forward-header", "forward_headers", multiple=True, metavar="'NAME: VALUE'",
              help="A header of the forward task (repeatable; may use {{ secrets.NAME }}).")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def webhooks_create(name: str, kind: str, secret: str | None, event: str | None,
                    header: str | None, algorithm: str | None, encoding: str | None,
                    id_header: str | None, forward_url: str | None,
                    forward_headers: tuple[str, ...], as_json: bool) -> None:
    """Create a webhook; prints its URL (and a generated secret, once)."""
    verify: dict[str, Any] = {"kind": kind}
    for key, value in (("secret", secret), ("header", header), ("algorithm", algorithm),
                       ("encoding", encoding), ("id_header", id_header)):
        if value is not None:
            verify[key] = value
    body: dict[str, Any] = {"name": name, "verify": verify}
    if event:
        body["event"] = event
    if forward_url:
        headers = {}
        for text in forward_headers:
            key, sep, value = text.partition(":")
            if not sep:
                raise click.BadParameter(f"{text!r} is not 'NAME: VALUE'",
                                         param_hint="--forward-header")
            headers[key.strip()] = value.strip()
        body["forward"] = {"url": forward_url, **({"headers": headers} if headers else {})}
    elif forward_headers:
        raise click.UsageError("--forward-header needs --forward-url")
    with api() as client:
        created = client.call("POST", "/v1/webhooks", json=body)
    if as_json:
        _print_json(created)
        return
    click.echo(f"webhook {created['id']} ({created['name']}): url {created['url']}")
    click.echo(f"events named {created['event']}")
    if created.get("secret"):
        click.echo(f"secret (shown once): {created['secret']}")


COMMANDS = (secrets, webhooks)
"""Registered on the ``offload`` group by :mod:`offload.cli`."""

"""The audit log: every operator action, with who did it, on what, and when.

:func:`record_audit` is the one way to write an entry. The API and dashboard
record their actions through :mod:`offload.api.auditing` (a middleware that knows
each operator route); the CLI and other code call :func:`record_audit` directly.
Entries are pruned with finished runs (``OFFLOAD_AUDIT_RETENTION_DAYS``, default
90 days: see :mod:`offload.engine.maintenance`).
"""

from __future__ import annotations

import getpass
import logging
import re
from typing import Any

from offload.clock import now
from offload.ids import new_id
from offload.store.base import Store
from offload.store.ops import Actor, AuditEntry

log = logging.getLogger("offload.audit")

ENGINE = Actor("engine", None, "offload")
"""Actions the engine takes by itself."""


def cli_actor() -> Actor:
    """The operating-system user running the CLI."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment
        user = "unknown"
    return Actor("cli", user, f"cli:{user}")


async def record_audit(store: Store, *, actor: Actor, action: str,
                       target_kind: str | None = None, target_id: str | None = None,
                       related_id: str | None = None, request_id: str | None = None,
                       outcome: str = "ok", details: dict[str, Any] | None = None
                       ) -> AuditEntry:
    """Write one audit entry, e.g. ``action="secret.put", target_kind="secret",
    target_id="STRIPE_KEY"``. Never pass secret values in ``details``."""
    from offload.engine.pause import ops_store

    entry = AuditEntry(id=new_id(), at=now(), actor=actor, action=action,
                       target_kind=target_kind, target_id=target_id, related_id=related_id,
                       request_id=request_id, outcome=outcome, details=details or {})
    await ops_store(store).audit_insert(entry)
    log.info("audit", extra={"action": action, "target_id": target_id, "actor": actor.name,
                             "outcome": outcome, "request_id": request_id})
    return entry


def actor_json(actor: Actor) -> dict[str, Any]:
    """An actor as the API shows it."""
    return {"kind": actor.kind, "id": actor.id, "name": actor.name}


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    """An audit entry as the API shows it."""
    return {"id": entry.id, "at": entry.at.isoformat(), "actor": actor_json(entry.actor),
            "action": entry.action, "target": {"kind": entry.target_kind,
                                               "id": entry.target_id},
            "related_id": entry.related_id, "request_id": entry.request_id,
            "outcome": entry.outcome, "details": entry.details}


_BULK_JOB = re.compile(r"\(job ([0-9A-HJKMNP-TV-Z]{26})\)")
"""How a run cancelled by a bulk job names the job in its error message."""


async def run_actions(store: Store, run_id: str) -> list[dict[str, Any]]:
    """Operator actions on a run, oldest first: who cancelled, replayed or reran it, who
    made it (when it is a replay or rerun of another run), and who started the bulk job
    that cancelled it."""
    from offload.engine.pause import ops_store
    from offload.store.ops import AuditFilter

    ops = ops_store(store)
    page = await ops.audit_list(filter=AuditFilter(target_id=run_id), cursor=None, limit=50)
    entries = list(page.data)
    run = await store.run_get(run_id=run_id, with_steps=False)
    message = (run.error or {}).get("message") if run is not None else None
    if isinstance(message, str) and (job := _BULK_JOB.search(message)):
        bulk = await ops.audit_list(filter=AuditFilter(target_id=job.group(1),
                                                       action="bulk.start"),
                                    cursor=None, limit=1)
        entries.extend(bulk.data)
    return [audit_json(e) for e in sorted(entries, key=lambda e: e.id)]

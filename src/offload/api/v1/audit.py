"""``/v1/audit``: the audit log of operator actions, newest first (admin only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from offload.api.auth import require
from offload.api.problems import problem_responses
from offload.engine.audit import audit_json
from offload.engine.pause import ops_store
from offload.errors import ValidationError
from offload.store.ops import AuditFilter

router = APIRouter(prefix="/v1/audit", tags=["audit"], dependencies=[Depends(require("admin"))],
                   responses=problem_responses(401, 403, 422, 503))

_CURSOR = r"^[0-9A-HJKMNP-TV-Z]{26}$"


@router.get("")
async def list_audit(
    request: Request,
    action: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_]+\.[a-z_]+$",
                                        description="e.g. run.cancel")] = None,
    actor: Annotated[str | None, Query(max_length=200, description="Actor id or name.")
                     ] = None,
    target_id: Annotated[str | None, Query(max_length=512, description="A run, function, "
                                           "queue, app… (a run also matches its replays).")
                         ] = None,
    after: Annotated[datetime | None, Query(description="At or after.")] = None,
    before: Annotated[datetime | None, Query(description="Before.")] = None,
    cursor: Annotated[str | None, Query(pattern=_CURSOR)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Audit entries newest first, filtered; ``next_cursor`` fetches the next page."""
    for name, value in (("after", after), ("before", before)):
        if value is not None and value.tzinfo is None:
            raise ValidationError(f"query.{name}", "needs a time zone offset", "naive_datetime")
    for name, text in (("actor", actor), ("target_id", target_id)):
        if text is not None and "\x00" in text:
            raise ValidationError(f"query.{name}", "must not contain NUL characters",
                                  "invalid_character")
    page = await ops_store(request.app.state.engine.store).audit_list(
        filter=AuditFilter(action=action, actor=actor, target_id=target_id, after=after,
                           before=before), cursor=cursor, limit=limit)
    return {"data": [audit_json(e) for e in page.data], "next_cursor": page.next_cursor}


"""``/v1/secrets``: values HTTP tasks reference as ``{{ secrets.NAME }}`` (admin only).

Values go in and never come out: the list shows names and dates, and every stored
task, run, log line and page shows the reference, not the value.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from offload.api.auth import require
from offload.api.problems import problem_responses
from offload.clock import now
from offload.errors import ConflictError, NotFoundError
from offload.models import SecretInfo
from offload.security.secrets import NAME_PATTERN

router = APIRouter(prefix="/v1/secrets", tags=["secrets"],
                   dependencies=[Depends(require("admin"))],
                   responses=problem_responses(401, 403, 409, 422, 503))

MAX_VALUE = 16 * 1024
_Name = Annotated[str, Path(pattern=NAME_PATTERN, description="Letters, digits, underscore; "
                            "starts with a letter or underscore; at most 64 characters.")]


class SecretIn(BaseModel):
    """A secret's value."""

    model_config = ConfigDict(extra="forbid")

    value: Annotated[StrictStr, Field(min_length=1, max_length=MAX_VALUE,
                                      pattern=r"^[^\r\n\x00]*$")] = Field(
        description="The value (no line breaks: it may go into a header).")


def secret_json(info: SecretInfo) -> dict[str, Any]:
    """A secret as listed: never its value."""
    return {"name": info.name, "reference": f"{{{{ secrets.{info.name} }}}}",
            "created_at": info.created_at.isoformat(), "updated_at": info.updated_at.isoformat()}


@router.put("/{name}")
async def put_secret(name: _Name, body: SecretIn, request: Request,
                     response: Response) -> dict[str, Any]:
    """Create or replace a secret; ``201`` when new, ``200`` when replaced."""
    engine = request.app.state.engine
    if engine.vault.box is None:
        raise ConflictError("no secrets key is configured: set OFFLOAD_SECRETS_KEY")
    at = now()
    created = await engine.store.secret_put(name=name, ciphertext=engine.vault.seal(
        name, body.value), at=at)
    response.status_code = 201 if created else 200
    found = next(s for s in await engine.store.secret_list() if s.name == name)
    return secret_json(found)


@router.get("")
async def list_secrets(request: Request) -> dict[str, Any]:
    """Every secret's name and dates (never a value)."""
    secrets = await request.app.state.engine.store.secret_list()
    return {"data": [secret_json(s) for s in secrets], "next_cursor": None}


@router.delete("/{name}", status_code=204)
async def delete_secret(name: _Name, request: Request) -> Response:
    """Remove a secret; tasks that reference it fail their next attempt."""
    if not await request.app.state.engine.store.secret_delete(name=name):
        raise NotFoundError(f"no secret named {name!r}")
    return Response(status_code=204)

"""``/v1/runs/bulk``: replay or cancel every run a filter selects, with stored progress."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from offload.api.auth import require
from offload.api.problems import problem_responses
from offload.engine.bulk import BulkJobs
from offload.errors import ConflictError, NotFoundError
from offload.models import BulkJob, RunStatus
from offload.store.base import RunFilter

router = APIRouter(prefix="/v1/runs/bulk", tags=["runs"],
                   dependencies=[Depends(require("admin"))],
                   responses=problem_responses(400, 401, 403, 404, 409, 413, 422, 503))

_TEXT = Annotated[str, Field(min_length=1, max_length=512)]


class BulkFilter(BaseModel):
    """Which runs: the same filters as ``GET /v1/runs``."""

    model_config = ConfigDict(extra="forbid")

    status: list[RunStatus] = Field(default_factory=list)
    function_id: _TEXT | None = None
    queue: _TEXT | None = None
    event_id: _TEXT | None = None
    event_name: _TEXT | None = None
    after: datetime | None = Field(None, description="Created at or after.")
    before: datetime | None = Field(None, description="Created before.")
    q: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        None, description="Run id or error text.")
    name: _TEXT | None = Field(None, description="HTTP tasks with this name.")
    exclude_replayed: bool = Field(
        False, description="Leave out runs that a run already replays (the failed view's "
        "default), so replaying the failed runs twice replays each once.")

    @field_validator("after", "before")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone offset, e.g. 2030-01-01T00:00:00Z")
        return value

    @field_validator("function_id", "queue", "event_id", "event_name", "q", "name")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value

    def to_filter(self) -> RunFilter:
        """The store's run filter."""
        return RunFilter(statuses=tuple(self.status), function_id=self.function_id,
                         queue=self.queue, event_id=self.event_id, event_name=self.event_name,
                         created_after=self.after, created_before=self.before, search=self.q,
                         name=self.name, unreplayed=self.exclude_replayed)


class BulkIn(BaseModel):
    """Start a bulk job."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["replay", "cancel"]
    filter: BulkFilter = Field(default_factory=lambda: BulkFilter.model_validate({}))


def bulk_json(job: BulkJob) -> dict[str, Any]:
    """A bulk job as the API shows it."""
    return {"id": job.id, "action": job.action, "status": job.status, "total": job.total,
            "done": job.done, "skipped": job.skipped, "error": job.error,
            "filter": job.filter, "created_at": job.created_at.isoformat(),
            "updated_at": job.updated_at.isoformat(),
            "finished_at": job.finished_at.isoformat() if job.finished_at else None}


def _jobs(request: Request) -> BulkJobs:
    jobs: BulkJobs = request.app.state.engine.bulk
    return jobs


async def _job_or_404(request: Request, job_id: str) -> BulkJob:
    job = await _jobs(request).get(job_id) if "\x00" not in job_id else None
    if job is None:
        raise NotFoundError(f"no bulk job with id {job_id[:64]!r}")
    return job


@router.post("", status_code=202)
async def start_bulk(body: BulkIn, request: Request) -> dict[str, Any]:
    """Replay or cancel, page by page in the background, every run the filter selects now.

    Poll ``GET /v1/runs/bulk/{id}`` for ``done`` of ``total``; the job is stored and
    carries on if an engine restarts.
    """
    job = await _jobs(request).start(body.action, body.filter.to_filter())
    return bulk_json(job)


@router.get("/{job_id}")
async def get_bulk(job_id: str, request: Request) -> dict[str, Any]:
    """A bulk job and its progress."""
    return bulk_json(await _job_or_404(request, job_id))


@router.post("/{job_id}/stop")
async def stop_bulk(job_id: str, request: Request) -> dict[str, Any]:
    """Stop a running job before its next page; what it already did stays done."""
    job = await _job_or_404(request, job_id)
    if not await _jobs(request).stop(job.id):
        raise ConflictError(f"bulk job {job.id} is not running ({job.status})")
    return bulk_json(await _job_or_404(request, job_id))

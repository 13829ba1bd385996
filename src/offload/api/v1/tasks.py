"""``POST /v1/tasks``: hand an HTTP call to offload; it is made, retried and reported.

The answer is ``202`` with the run id once the task is committed, before the
target is called. A repeated ``idempotency_key`` within 24 hours answers
``200`` with the first run instead of creating a second.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.routing import APIRoute
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
)
from starlette.responses import Response

from offload.api.auth import require
from offload.api.identifiers import no_control
from offload.api.problems import problem_responses
from offload.clock import now
from offload.engine import flow
from offload.engine.task_spec import FLOW_FIELDS, TaskSpec
from offload.errors import AddressRefusedError, ValidationError
from offload.ids import new_ids
from offload.models import HTTP_FUNCTION_ID, ItemKind, Run
from offload.outbound.ssrf import validate_url
from offload.outbound.tracing import parse_traceparent
from offload.security.secrets import check_url_references, reference_problem
from offload.store.base import Change, ChangeResult, Idempotency, NewItem, NewRun

router = APIRouter(prefix="/v1/tasks", tags=["tasks"],
                   responses=problem_responses(400, 401, 403, 413, 422, 503))

MAX_DELAY = timedelta(days=365)
MAX_BATCH = 1000
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")
_FORBIDDEN_HEADERS = {"host", "content-length", "transfer-encoding", "connection",
                      "keep-alive", "upgrade", "te", "trailer", "proxy-connection"}
_HEADER_VALUE = re.compile(r"^[\t\x20-\x7e]*$")
_QUEUE_NAME = r"^[A-Za-z0-9_.:-]{1,64}$"


_GOOD_URLS: dict[str, None] = {}
"""URLs that passed _check_url (a pure function of the string): targets repeat a lot."""
_GOOD_URLS_MAX = 4096


def _check_url(value: str | None, *, references: bool = False) -> str | None:
    if value is None or value in _GOOD_URLS:
        return value
    checked = value
    if "{{" in value or "}}" in value:
        if not references:
            raise ValueError("secret references ({{ secrets.NAME }}) are allowed only in the "
                             "target URL's query")
        checked = check_url_references(value)
    if len(value) > 2048:
        raise ValueError("URL is longer than 2048 characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (\ud800) from JSON: cannot be stored
        raise ValueError("URL is not valid Unicode") from None
    try:
        validate_url(checked)
    except ValidationError as exc:
        raise ValueError(exc.message) from None
    if checked is not value:  # with references: valid only where references are allowed
        return value
    if len(_GOOD_URLS) >= _GOOD_URLS_MAX:
        _GOOD_URLS.clear()
    _GOOD_URLS[value] = None
    return value


def _period(value: Any, info: ValidationInfo) -> Any:
    if value is None:
        return None
    try:
        flow.duration_ms(value, str(info.field_name))
    except ValidationError as exc:
        raise ValueError(exc.message) from None
    except OverflowError:  # seconds beyond timedelta's range (flow.duration_ms does not check)
        raise ValueError("is far too long") from None
    return value


_Period = Annotated[StrictStr | StrictInt | StrictFloat, Field(
    description='A time string ("500ms", "30s", "1m30s", "2h", "1d") or seconds; at most 7 '
                "days.", examples=["1m"])]
_FlowKey = Annotated[StrictStr, Field(min_length=1, max_length=255), AfterValidator(no_control)]


class ThrottleIn(BaseModel):
    """Delay excess task starts: ``limit`` per ``period`` (GCRA), ``burst`` back to back."""

    model_config = ConfigDict(extra="forbid")

    limit: Annotated[StrictInt, Field(ge=1, le=1_000_000)] = Field(
        description="Starts allowed per period.")
    period: _Period
    burst: Annotated[StrictInt, Field(ge=1, le=10_000)] = Field(
        1, description="Starts allowed back to back before spacing applies.")
    key: _FlowKey | None = Field(None, description="Throttle per key instead of per queue.")

    _check_period = field_validator("period")(_period)


class RateLimitIn(BaseModel):
    """Drop excess tasks: at most ``limit`` per ``period`` (GCRA); the rest are cancelled."""

    model_config = ConfigDict(extra="forbid")

    limit: Annotated[StrictInt, Field(ge=1, le=1_000_000)] = Field(
        description="Tasks accepted per period.")
    period: _Period
    key: _FlowKey | None = Field(None, description="Rate limit per key instead of per queue.")

    _check_period = field_validator("period")(_period)


class DebounceIn(BaseModel):
    """Run once, with the last task's spec, after ``period`` without a new task."""

    model_config = ConfigDict(extra="forbid")

    period: _Period
    key: _FlowKey | None = Field(None, description="Debounce per key instead of per queue.")
    timeout: _Period | None = Field(
        None, description="Longest wait from the first task of a debounce; it then runs.")

    _check_periods = field_validator("period", "timeout")(_period)


class SingletonIn(BaseModel):
    """At most one unfinished task per key (or per queue)."""

    model_config = ConfigDict(extra="forbid")

    key: _FlowKey | None = Field(None, description="One per key instead of one per queue.")
    mode: Literal["skip", "cancel"] = Field(
        "skip", description="skip: a new task while one is unfinished is recorded as "
        "cancelled and never called; cancel: the unfinished one is cancelled instead.")


_FLOW_FIELDS = set(FLOW_FIELDS)


class TaskIn(BaseModel):
    """An HTTP task: the call to make and what to do with its outcome."""

    model_config = ConfigDict(extra="forbid")

    url: StrictStr = Field(description="The target URL (http or https).")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = Field(
        "POST", description="HTTP method. Redirects never change it.")
    headers: dict[StrictStr, StrictStr] = Field(
        default_factory=dict, description="Headers sent to the target (credentials are "
        "stored but never shown back).")
    body: Any = Field(None, description="JSON value sent as application/json, or a string "
                      "sent as text/plain unless a Content-Type header says otherwise.")
    callback_url: StrictStr | None = Field(None, description="Receives the outcome (signed).")
    failure_callback_url: StrictStr | None = Field(
        None, description="Receives the outcome instead of callback_url when the task fails.")
    retries: Annotated[StrictInt, Field(ge=0, le=50)] = Field(
        3, description="Retries after the first attempt on network errors, timeouts, 5xx, 429.")
    timeout: Annotated[float, Field(gt=0, le=900, strict=True)] = Field(
        30.0, description="Seconds allowed for one attempt.")
    delay: Annotated[float, Field(ge=0, le=MAX_DELAY.total_seconds(), strict=True)] | None = \
        Field(None, description="Seconds to wait before the first attempt.")
    not_before: datetime | None = Field(
        None, description="Earliest time of the first attempt (RFC 3339 with offset).")
    idempotency_key: Annotated[StrictStr, Field(min_length=1, max_length=255)] | None = Field(
        None, description="A repeat within 24 h returns the first run.")
    name: Annotated[StrictStr, Field(min_length=1, max_length=255)] | None = Field(
        None, description="A label for the task, shown in the dashboard and filterable "
        "with GET /v1/runs?name=.")
    queue: Annotated[StrictStr, Field(pattern=_QUEUE_NAME)] = Field(
        "default", description="Queue name, for grouping and flow control.")
    concurrency: Annotated[StrictInt, Field(ge=1, le=flow.MAX_CONCURRENCY)] | None = Field(
        None, description="At most this many tasks of the queue call their target at once.")
    concurrency_key: _FlowKey | None = Field(
        None, description="A concurrency key shared by every task (and env-scoped function) "
        "that names it; needs concurrency_limit.")
    concurrency_limit: Annotated[StrictInt, Field(ge=1, le=flow.MAX_CONCURRENCY)] | None = \
        Field(None, validate_default=True,
              description="At most this many tasks with concurrency_key in flight at once.")
    throttle: ThrottleIn | None = Field(
        None, description="Delay excess starts (nothing is dropped).")
    rate_limit: RateLimitIn | None = Field(
        None, description="Drop excess tasks: they are recorded as cancelled, never called.")
    priority: Annotated[StrictInt, Field(ge=-600, le=600)] | None = Field(
        None, description="Seconds of head start over other due tasks (negative delays).")
    debounce: DebounceIn | None = Field(
        None, description="Coalesce tasks: only the last one within the period runs.")
    singleton: SingletonIn | None = Field(
        None, description="At most one unfinished task of the queue (or key).")
    start_timeout: Annotated[float, Field(gt=0, le=MAX_DELAY.total_seconds(), strict=True)] \
        | None = Field(None, description="Seconds the task may wait to start (after its "
                       "delay); past it the run is cancelled with StartTimeoutError.")
    finish_timeout: Annotated[float, Field(gt=0, le=MAX_DELAY.total_seconds(), strict=True)] \
        | None = Field(None, description="Seconds from creation to the end of the last "
                       "attempt; past it the run is cancelled with FinishTimeoutError.")

    correlation_id: Annotated[StrictStr, Field(min_length=1, max_length=255)] | None = Field(
        None, description="Your id for this work (an order id, a request id): stored on the "
        "run, filterable in GET /v1/runs?correlation_id=.")

    @field_validator("url", "callback_url", "failure_callback_url")
    @classmethod
    def _urls(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _check_url(value, references=info.field_name == "url")

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 64:
            raise ValueError("at most 64 headers")
        for name, header_value in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"header name {name[:40]!r} is not a valid token")
            if name.lower() in _FORBIDDEN_HEADERS or name.lower().startswith("webhook-"):
                raise ValueError(f"header {name!r} is set by offload and cannot be given")
            if "\r" in header_value or "\n" in header_value or "\0" in header_value:
                raise ValueError(f"header {name!r} contains a line break")
            if not _HEADER_VALUE.match(header_value):
                # httpx sends header values as ASCII; anything else could never be sent.
                raise ValueError(f"header {name!r} must be printable ASCII")
            if len(header_value) > 8192:
                raise ValueError(f"header {name!r} is longer than 8192 characters")
            if "{{" in header_value and (problem := reference_problem(header_value)):
                raise ValueError(f"header {name!r}: {problem}")
        return value

    # Cross-field checks sit on the later field (fields validate in declaration order),
    # so the error names a field ("body.not_before") rather than the whole body.
    @field_validator("body")
    @classmethod
    def _no_get_body(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and info.data.get("method") == "GET":
            raise ValueError("a GET task cannot have a body")
        try:  # what is stored and sent later must serialise now
            orjson.dumps(value)
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise ValueError(f"cannot be sent as JSON: {exc} (integers must fit in 64 bits, "
                             "nesting at most 254 deep, strings valid Unicode)") from None
        return value

    @field_validator("idempotency_key", "correlation_id")
    @classmethod
    def _key_text(cls, value: str | None) -> str | None:
        return None if value is None else no_control(value)

    @field_validator("concurrency_limit")
    @classmethod
    def _limit_with_key(cls, value: int | None, info: ValidationInfo) -> int | None:
        if (value is None) != (info.data.get("concurrency_key") is None):
            raise ValueError("concurrency_key and concurrency_limit go together")
        return value

    @field_validator("not_before")
    @classmethod
    def _aware(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("not_before needs a time zone offset, e.g. 2030-01-01T00:00:00Z")
        if value is not None and info.data.get("delay") is not None:
            raise ValueError("give delay or not_before, not both")
        return value

    def spec(self) -> dict[str, Any]:
        """The task as stored in the run's input."""
        return self.task_spec().as_input()

    def task_spec(self) -> TaskSpec:
        """The task as the engine keeps it (see :class:`offload.engine.task_spec.TaskSpec`)."""
        has_type = any(k.lower() == "content-type" for k in self.headers)
        body_kind = "text" if isinstance(self.body, str) else "json"
        return TaskSpec(url=self.url, method=self.method, headers=self.headers,
                        body=self.body, body_kind=body_kind
                        if not has_type or body_kind == "json" else "text",
                        callback_url=self.callback_url,
                        failure_callback_url=self.failure_callback_url,
                        retries=self.retries, timeout_s=self.timeout, queue=self.queue,
                        name=self.name, flow=self.flow_fields())

    def flow_fields(self) -> dict[str, Any]:
        """The flow-control and timeout fields given, kept so replays and reruns honour
        them too."""
        if not self._has_flow():
            return {}
        return self.model_dump(include=_FLOW_FIELDS, exclude_none=True)

    def _has_flow(self) -> bool:
        """False when no flow-control or timeout field was given (all are None then)."""
        return not _FLOW_FIELDS.isdisjoint(self.model_fields_set)

    def new_run(self, at: datetime) -> NewRun:
        """The run (and its first queue item) this task becomes."""
        due = at
        if self.delay is not None:
            due = at + timedelta(seconds=self.delay)
        elif self.not_before is not None:
            due = max(at, self.not_before.astimezone(UTC))
        idem = None
        if self.idempotency_key is not None:
            idem = Idempotency(scope="task", key=self.idempotency_key,
                               expires_at=at + flow.IDEMPOTENCY_WINDOW)
        return self.task_spec().new_run(at, due=due, idempotency=idem,
                                        correlation_id=self.correlation_id)

    def plain_input(self) -> dict[str, Any]:
        """``task_spec().as_input()`` of a task without flow fields, built directly (the
        batch path; a unit test keeps the two equal, key order included)."""
        body = self.body
        return {"url": self.url, "method": self.method, "headers": self.headers,
                "body": body, "body_kind": "text" if isinstance(body, str) else "json",
                "callback_url": self.callback_url,
                "failure_callback_url": self.failure_callback_url, "retries": self.retries,
                "timeout_s": self.timeout, "queue": self.queue, "name": self.name,
                "flow": {}}


def new_runs(tasks: list[TaskIn], at: datetime) -> list[NewRun]:
    """``[t.new_run(at) for t in tasks]``, cheaper: tasks without flow-control or timeout
    fields become their run directly, with their ids made in bulk (:func:`new_ids`)."""
    ids = new_ids(2 * len(tasks))
    runs = []
    fields = _FLOW_FIELDS
    window = at + flow.IDEMPOTENCY_WINDOW
    for i, task in enumerate(tasks):
        if not fields.isdisjoint(task.model_fields_set):
            runs.append(task.new_run(at))
            continue
        due = at
        if task.delay is not None:
            due = at + timedelta(seconds=task.delay)
        elif task.not_before is not None:
            due = max(at, task.not_before.astimezone(UTC))
        key = task.idempotency_key
        queue = task.queue
        runs.append(NewRun(
            id=ids[2 * i], function_id=HTTP_FUNCTION_ID, created_at=at,
            input=task.plain_input(), queue=queue,
            idempotency=None if key is None else Idempotency(scope="task", key=key,
                                                             expires_at=window),
            name=task.name, correlation_id=task.correlation_id,
            items=[NewItem(kind=ItemKind.RUN, due_at=due, queue=queue, id=ids[2 * i + 1])]))
    return runs


class TaskBatchIn(BaseModel):
    """Many tasks in one request; all are accepted or none is."""

    model_config = ConfigDict(extra="forbid")

    tasks: Annotated[list[TaskIn], Field(min_length=1, max_length=MAX_BATCH)]


class TaskAccepted(BaseModel):
    """The answer to a task submission."""

    id: str
    status: str
    created_at: datetime
    duplicate: bool = Field(description="True when an idempotency key matched an earlier run.")
    outcome: Literal["created", "duplicate", "debounced", "rate_limited", "skipped"] = Field(
        "created", description="created; duplicate (idempotency key seen); debounced (merged "
        "into the pending run of its debounce, which now runs this task's spec); "
        "rate_limited (dropped: recorded as a cancelled run, never called); skipped (a "
        "singleton of its key is unfinished: recorded as cancelled, never called).")


class TaskBatchAccepted(BaseModel):
    """The answer to a batch submission, in the order given."""

    data: list[TaskAccepted]


def _accepted(run: Run, created: bool, outcome: str | None = None,
              created_at: str | None = None) -> dict[str, Any]:
    outcome = outcome or ("created" if created else "duplicate")
    return {"id": run.id, "status": run.status.value,
            "created_at": created_at or run.created_at.isoformat(),
            "duplicate": outcome == "duplicate", "outcome": outcome}


def _outcomes(result: ChangeResult) -> list[str | None]:
    return list(result.outcomes) if len(result.outcomes) == len(result.runs) \
        else [None] * len(result.runs)


def _json(body: Any, status_code: int) -> Response:
    """What JSONResponse answered (compact UTF-8 JSON), serialised by orjson."""
    return Response(orjson.dumps(body), status_code=status_code,
                    media_type="application/json")


def _traced(run: NewRun, request: Request) -> NewRun:
    """``run`` continuing the caller's trace when the request carried a ``traceparent``."""
    parent = request.headers.get("traceparent")
    if parent and (valid := parse_traceparent(parent)):
        run.state = {**run.state, "traceparent": valid}
    return run


def _guard_targets(engine: Any, tasks: list[TaskIn], prefix: str) -> None:
    """Refuse now (422) the target addresses the SSRF guard would refuse at call time."""
    policy = getattr(engine.client, "policy", None)
    if policy is None:
        return
    passed: set[str] = set()  # the check is a function of the URL: once per distinct URL
    for i, task in enumerate(tasks):
        for name in ("url", "callback_url", "failure_callback_url"):
            url = getattr(task, name)
            if url is None or url in passed:
                continue
            try:
                policy.check_url(url)
            except AddressRefusedError as exc:
                raise ValidationError(f"{prefix.format(i=i)}.{name}", str(exc),
                                      "address_refused") from None
            passed.add(url)


async def _queue_one(request: Request, task: TaskIn) -> Response:
    engine = request.app.state.engine
    _guard_targets(engine, [task], "body")
    result = await engine.store.apply(Change(runs=[_traced(task.new_run(now()), request)]))
    for replaced in result.cancelled:  # a singleton in cancel mode replaced it
        engine.notify_finished(replaced)
    run, created = result.runs[0]
    body = _accepted(run, created, _outcomes(result)[0])
    accepted = body["outcome"] in ("created", "debounced")
    return _json(body, 202 if accepted else 200)


async def _queue_many(request: Request, batch: TaskBatchIn) -> Response:
    engine = request.app.state.engine
    _guard_targets(engine, batch.tasks, "body.tasks[{i}]")
    runs = new_runs(batch.tasks, now())
    parent = request.headers.get("traceparent")
    if parent and (valid := parse_traceparent(parent)):
        for run in runs:
            run.state = {**run.state, "traceparent": valid}
    result = await engine.store.apply(Change(runs=runs))
    for replaced in result.cancelled:
        engine.notify_finished(replaced)
    iso: dict[datetime, str] = {}  # a batch's runs mostly share one created_at
    data = []
    for (run, created), outcome in zip(result.runs, _outcomes(result), strict=True):
        stamp = iso.get(run.created_at)
        if stamp is None:
            stamp = iso[run.created_at] = run.created_at.isoformat()
        data.append(_accepted(run, created, outcome, stamp))
    return _json({"data": data}, 202)


_require_ingest = require("ingest")
require_ingest = _require_ingest
"""The ingest routes' key check (also run by :mod:`offload.api.fastpath`)."""
queue_one = _queue_one
queue_many = _queue_many
_Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class _JsonBodyRoute(APIRoute):
    """A FastAPI route whose valid JSON bodies skip FastAPI's body machinery.

    The route keeps its FastAPI signature, so the OpenAPI document is unchanged. At run
    time a request with a JSON content type is validated straight from its bytes with
    pydantic-core's JSON parser (``model_validate_json``). Anything that does not pass
    that way (no or another content type, an empty body, invalid JSON, an invalid task)
    goes through FastAPI's own handler, so every error answer is exactly what it was.
    """

    fast: Callable[[Request, Any], Awaitable[Response]]
    model: type[BaseModel]

    def get_route_handler(self) -> _Handler:
        slow = super().get_route_handler()
        fast, model = self.fast, self.model

        async def handler(request: Request) -> Response:
            if not is_json(request.headers.get("content-type")):
                return await slow(request)
            try:
                raw = await request.body()
            except HTTPException:
                raise
            except Exception as exc:  # as FastAPI answers a body it could not read
                raise HTTPException(status_code=400,
                                    detail="There was an error parsing the body") from exc
            if not raw:
                return await slow(request)
            try:
                value = model.model_validate_json(raw)
            except (ValueError, RecursionError):  # pydantic's ValidationError included
                return await slow(request)
            await _require_ingest(request)
            return await fast(request, value)

        return handler


def is_json(content_type: str | None) -> bool:
    """True for application/json and application/*+json (as FastAPI decides)."""
    if not content_type:
        return False
    kind = content_type.partition(";")[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/")
                                          and kind.endswith("+json"))


def _route(fast: Callable[[Request, Any], Awaitable[Response]],
           model: type[BaseModel]) -> type[APIRoute]:
    return type(f"_{model.__name__}Route", (_JsonBodyRoute,), {"fast": staticmethod(fast),
                                                              "model": model})


async def create_task(task: TaskIn, request: Request) -> Response:
    """Queue one HTTP task."""
    return await _queue_one(request, task)


async def create_tasks(batch: TaskBatchIn, request: Request) -> Response:
    """Queue many HTTP tasks atomically."""
    return await _queue_many(request, batch)


router.add_api_route(
    "", create_task, methods=["POST"], status_code=202, response_model=TaskAccepted,
    dependencies=[Depends(_require_ingest)],
    responses={200: {"model": TaskAccepted, "description": "Duplicate idempotency key"}},
    route_class_override=_route(_queue_one, TaskIn))
router.add_api_route(
    "/batch", create_tasks, methods=["POST"], status_code=202,
    response_model=TaskBatchAccepted, dependencies=[Depends(_require_ingest)],
    route_class_override=_route(_queue_many, TaskBatchIn))


def task_from_spec(spec: dict[str, Any], edits: dict[str, Any] | None = None, *,
                   field_prefix: str = "body") -> TaskIn:
    """The task a stored spec came from, with ``edits`` applied and validated again.

    Used to rerun a task with changed fields; errors name ``<field_prefix>.<field>``.
    """
    from pydantic import ValidationError as PydanticError

    fields = {k: v for k, v in spec.items() if k in TaskIn.model_fields}
    if "timeout_s" in spec:
        fields["timeout"] = spec["timeout_s"]
    fields.update(spec.get("flow") or {})
    fields.update(edits or {})
    fields.pop("delay", None)
    fields.pop("not_before", None)
    fields.pop("idempotency_key", None)
    try:
        return TaskIn.model_validate(fields)
    except PydanticError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ValidationError(f"{field_prefix}.{where}" if where else field_prefix,
                              str(first.get("msg", "invalid")),
                              str(first.get("type", "invalid"))) from None

"""The data model: apps, functions, events, runs, steps, queue items, waits and keys.

Every record is a frozen dataclass; times are aware UTC datetimes. The store
returns these, never rows. Everything is a run: HTTP tasks are runs of the
built-in ``http`` function, durable functions are runs of synced functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from offload.protocol.function_config import FunctionConfig

HTTP_FUNCTION_ID = "http"
"""The built-in function that HTTP tasks are runs of."""


class RunStatus(StrEnum):
    """Where a run is in its life. Terminal: completed, failed, cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    SLEEPING = "sleeping"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """True for statuses a run never leaves."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class StepKind(StrEnum):
    """What a step does."""

    RUN = "run"
    SLEEP = "sleep"
    WAIT_FOR_EVENT = "wait_for_event"
    INVOKE = "invoke"
    SEND_EVENT = "send_event"
    REQUEST = "request"
    CALLBACK = "callback"


class StepStatus(StrEnum):
    """Where a step is. ``errored`` means an attempt failed and another is due."""

    PLANNED = "planned"
    RUNNING = "running"
    ERRORED = "errored"
    SLEEPING = "sleeping"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"


class ItemKind(StrEnum):
    """What a queue item asks the scheduler to do."""

    RUN = "run"
    """Execute the next attempt of a run (call the target or the app)."""
    CALLBACK = "callback"
    """Deliver an HTTP task's outcome to its callback URL."""
    EVENT = "event"
    """Fan an accepted event out: start triggered runs, resume waits, cancel runs."""
    WAIT_TIMEOUT = "wait_timeout"
    """A wait-for-event or invoke reached its timeout."""
    BULK = "bulk"
    """Replay or cancel one page of the runs a bulk job selects."""
    RUN_TIMEOUT = "run_timeout"
    """A run's start or finish timeout expired."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A hashed API key; the secret itself is shown once at creation."""

    id: str
    name: str
    scope: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class App:
    """A set of functions served at one URL."""

    id: str
    url: str
    sdk: str | None
    framework: str | None
    app_version: str | None
    checksum: str | None
    sync_error: str | None
    synced_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Function:
    """A synced function. ``config`` is the SDK's function config as registered (what the
    API and dashboard show); ``spec`` is that config parsed, what the engine reads.

    Sync passes the spec it parsed and the store the one it keeps per config text
    (``store/rows.row_function``), so nothing parses a config twice.
    """

    id: str
    app_id: str
    name: str
    config: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    spec: FunctionConfig = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Event:
    """A named JSON payload. ``ts`` is the sender's time in epoch milliseconds."""

    id: str
    name: str
    data: Any
    ts: int
    received_at: datetime
    user: Any = None
    external_id: str | None = None
    correlation_id: str | None = None
    traceparent: str | None = None
    extra: dict[str, Any] | None = None
    """Other fields the sender sent (``v``, ...), kept as they were."""

    def as_payload(self) -> dict[str, Any]:
        """The event as the SDKs and expressions see it."""
        payload = {"id": self.id, "name": self.name, "data": self.data,
                   "user": self.user or {}, "ts": self.ts}
        return {**self.extra, **payload} if self.extra else payload


@dataclass(frozen=True, slots=True)
class Step:
    """A memoized unit inside a run; a completed step's output is written once."""

    run_id: str
    id: str
    name: str
    kind: StepKind
    status: StepStatus
    attempts: int
    position: int
    input: Any = None
    output: Any = None
    error: dict[str, Any] | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    """Every attempt, oldest first: ``{attempt, status, started_at, ended_at, error}``."""


@dataclass(frozen=True, slots=True)
class Run:
    """One execution of one function for one trigger."""

    id: str
    function_id: str
    status: RunStatus
    attempt: int
    created_at: datetime
    updated_at: datetime
    app_id: str | None = None
    event_ids: list[str] = field(default_factory=list)
    input: Any = None
    output: Any = None
    error: dict[str, Any] | None = None
    queue: str | None = None
    correlation_id: str | None = None
    replay_of: str | None = None
    idempotency_key: str | None = None
    state: dict[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    steps: list[Step] | None = None
    name: str | None = None
    """An HTTP task's optional label (``POST /v1/tasks`` ``name``)."""


@dataclass(frozen=True, slots=True)
class QueueItem:
    """What the scheduler claims: a due unit of work under a lease."""

    id: str
    kind: ItemKind
    run_id: str | None
    due_at: datetime
    priority: int
    queue: str
    payload: dict[str, Any]
    lease_token: str | None = None
    lease_expires_at: datetime | None = None
    expiries: int = 0
    concurrency_key: str | None = None
    carried: bool = False
    """The claim read this RUN item's run with it: ``run`` is the run (with its steps and
    ``events`` for durable functions), or None when it has ended or is gone."""
    run: Run | None = None
    events: list[Event] | None = None


@dataclass(frozen=True, slots=True)
class Wait:
    """A run paused until an event (wait-for-event) or a run's end (invoke)."""

    id: str
    run_id: str
    step_id: str
    event_name: str | None
    expression: str | None
    correlation_id: str | None
    trigger: dict[str, Any] | None
    expires_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class BulkJob:
    """A bulk replay or cancel of the runs a filter selects, and how far it got."""

    id: str
    action: str
    """``replay`` or ``cancel``."""
    filter: dict[str, Any]
    status: str
    """``running``, ``completed``, ``failed`` or ``cancelled`` (stopped)."""
    total: int
    """Runs the filter selected when the job started."""
    done: int
    skipped: int
    """Runs that had already ended (cancel only)."""
    created_at: datetime
    updated_at: datetime
    error: str | None = None
    finished_at: datetime | None = None

    @property
    def running(self) -> bool:
        """True until every page is done or the job was stopped."""
        return self.status == "running"


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """An engine process as it announced itself, with its last heartbeat."""

    id: str
    """The scheduler's lease owner name."""
    host: str
    pid: int
    version: str
    started_at: datetime
    heartbeat_at: datetime
    leases: int = 0
    """Queue items this process holds a lease on (filled in by the store's list)."""


@dataclass(frozen=True, slots=True)
class Webhook:
    """An inbound webhook endpoint (``/w/{id}``): how deliveries are verified and used.

    ``secret`` and ``previous_secret`` are the stored (encrypted) forms; the previous
    one is accepted until ``previous_until`` (rotation overlap).
    """

    id: str
    name: str
    verify: dict[str, Any]
    """``kind`` and its options; never the secret."""
    event: str
    """The event name template, e.g. ``stripe/{{ type }}``."""
    forward: dict[str, Any] | None
    """HTTP task fields: each delivery is also forwarded to this URL."""
    created_at: datetime
    updated_at: datetime
    secret: str | None = None
    previous_secret: str | None = None
    previous_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """An accepted delivery: what came in, and the event (and forward run) it became."""

    id: str
    webhook_id: str
    delivery_id: str
    """The provider's delivery id (or offload's own when the sender gives none)."""
    headers: dict[str, str]
    body: bytes
    received_at: datetime
    event_id: str | None = None
    event_name: str | None = None
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """A stored secret as it is listed: its name and dates, never its value."""

    name: str
    created_at: datetime
    updated_at: datetime


class RunError(dict[str, Any]):
    """An error object as stored on runs and steps: ``name``, ``message``, ``stack`` and
    whatever else the SDK or the engine sent (``code``, ``cause``, ...), kept whole.

    A ``dict`` (so it is stored and serialised as is) with one constructor for the
    engine's own errors and one for errors received from elsewhere.
    """

    def __init__(self, name: str, message: str, *, stack: str | None = None,
                 **extra: Any) -> None:
        super().__init__(name=name, message=message, stack=stack, **extra)

    @classmethod
    def of(cls, value: Mapping[str, Any] | None, *, default_name: str = "Error"
           ) -> RunError:
        """``value`` kept whole, with ``name``, ``message`` and ``stack`` always set."""
        data = dict(value or {})
        name = str(data.pop("name", None) or default_name)
        message = str(data.pop("message", None) or "")
        stack = data.pop("stack", None)
        return cls(name, message, stack=stack if isinstance(stack, str) else None, **data)

    @property
    def name(self) -> str:
        """The error's name (class)."""
        return str(self["name"])

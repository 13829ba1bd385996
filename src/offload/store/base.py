"""The Store contract: the only place the engine's state is read or written.

Reads are ``<noun>_<verb>`` methods. Every write that moves work forward goes
through :meth:`Store.apply`, one transaction that is optionally *fenced* by the
lease of a claimed queue item: if the lease moved on (the item was rescued,
re-claimed or cancelled), nothing is written and :class:`LeaseLostError` is
raised. That one entry point keeps the two implementations small and makes
"each step result and run outcome recorded exactly once" a property of one
method that the contract suite pins on both databases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from offload.models import (
    ApiKey,
    App,
    BulkJob,
    EngineInfo,
    Event,
    Function,
    ItemKind,
    QueueItem,
    Run,
    RunStatus,
    StepKind,
    StepStatus,
    Wait,
)

if TYPE_CHECKING:
    from offload.models import SecretInfo, Webhook, WebhookDelivery

T = TypeVar("T")

WAKE_WITHIN_MS = 1000
"""Committed items due within this long wake the schedulers (the store's listener); later
ones do not: schedulers re-read the next due time at least this often."""


class _Unset:
    """Marker for "leave this field as it is" in patches."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclass(frozen=True, slots=True)
class Fence:
    """The claimed queue item a change completes, with the lease token it was claimed under."""

    item_id: str
    lease_token: str


@dataclass(slots=True)
class NewItem:
    """A queue item to insert. ``due_at`` already includes any priority head start."""

    kind: ItemKind
    due_at: datetime
    run_id: str | None = None
    queue: str = "default"
    priority: int = 0
    payload: dict[str, Any] = field(default_factory=dict)
    concurrency_key: str | None = None
    id: str | None = None
    concurrency_limit: int | None = None
    concurrency_key2: str | None = None
    concurrency_limit2: int | None = None


@dataclass(slots=True)
class Idempotency:
    """One run per ``(scope, key)`` until ``expires_at``."""

    scope: str
    key: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ConcurrencyLimit:
    """At most ``limit`` leased RUN items with ``key`` at once."""

    key: str
    limit: int


@dataclass(frozen=True, slots=True)
class Gcra:
    """A throttle (delay) or rate limit (drop): ``limit`` per ``period_ms``, keyed."""

    key: str
    limit: int
    period_ms: int
    burst: int = 1


@dataclass(frozen=True, slots=True)
class Debounce:
    """Start once, with the last run's input, after ``period_ms`` of quiet (or ``timeout_ms``)."""

    key: str
    period_ms: int
    timeout_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """Collect runs' events into one run: up to ``max_size`` or until ``timeout_ms``."""

    key: str
    max_size: int
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class Singleton:
    """One unfinished run per key: ``skip`` the new run or ``cancel`` the old one."""

    key: str
    mode: str


@dataclass(slots=True)
class RunFlow:
    """Flow control the store applies when it creates a run (see ``engine/flow.py``)."""

    concurrency: list[ConcurrencyLimit] = field(default_factory=list)
    throttle: Gcra | None = None
    rate_limit: Gcra | None = None
    debounce: Debounce | None = None
    batch: Batch | None = None
    singleton: Singleton | None = None


@dataclass(slots=True)
class NewRun:
    """A run to create, with the queue items that start it."""

    id: str
    function_id: str
    created_at: datetime
    app_id: str | None = None
    status: RunStatus = RunStatus.QUEUED
    input: Any = None
    event_ids: list[str] = field(default_factory=list)
    queue: str | None = None
    correlation_id: str | None = None
    replay_of: str | None = None
    state: dict[str, Any] = field(default_factory=dict)
    idempotency: Idempotency | None = None
    items: list[NewItem] = field(default_factory=list)
    flow: RunFlow | None = None
    name: str | None = None


@dataclass(slots=True)
class NewEvent:
    """An event to store. With ``fanout`` an EVENT item is queued to start and resume runs."""

    id: str
    name: str
    data: Any
    ts: int
    received_at: datetime
    user: Any = None
    external_id: str | None = None
    fanout: bool = True
    correlation_id: str | None = None
    """Given to the runs the event starts."""
    traceparent: str | None = None
    """The sender's W3C trace context, continued by the runs the event starts."""
    extra: dict[str, Any] | None = None
    """Other fields the sender sent (``v``, ...)."""
    fanout_if_waited: bool = False
    """With ``fanout``: queue the EVENT item only if some wait is for this event's name
    (the writer knows that no function is triggered by it and no invoke waits on it)."""


@dataclass(slots=True)
class RunPatch:
    """Fields of a run to change; UNSET leaves a field alone. Terminal runs are never patched."""

    run_id: str
    status: RunStatus | None = None
    attempt: int | None = None
    output: Any = UNSET
    error: Any = UNSET
    state: Any = UNSET
    started_at: datetime | None = None
    ended_at: datetime | None = None
    expect_state: Any = UNSET
    """Optimistic concurrency: apply the change only if the run's ``state`` is exactly this
    value (and the run has not ended); otherwise :class:`~offload.errors.StaleRunError` is
    raised and nothing of the change is written. The executor uses it so that concurrent
    attempts of one run (parallel steps) decide "who enqueues the next discovery" once."""


@dataclass(slots=True)
class StepWrite:
    """A step to insert or update. A completed or failed step is never overwritten."""

    run_id: str
    id: str
    name: str
    kind: StepKind
    status: StepStatus
    attempts: int = 0
    input: Any = UNSET
    output: Any = UNSET
    error: Any = UNSET
    started_at: datetime | None = None
    ended_at: datetime | None = None
    history: Any = UNSET
    """The step's whole attempt history (replaces the stored one), or UNSET to keep it."""


@dataclass(slots=True)
class NewWait:
    """A pause: resumed by a matching event, an invoked run's end, or its timeout item."""

    id: str
    run_id: str
    step_id: str
    created_at: datetime
    event_name: str | None = None
    expression: str | None = None
    correlation_id: str | None = None
    trigger: dict[str, Any] | None = None
    expires_at: datetime | None = None


@dataclass(slots=True)
class Resume:
    """Resume a wait: applied only if the wait still exists (the first resumer wins)."""

    wait_id: str
    run_id: str
    step: StepWrite
    item: NewItem


@dataclass(slots=True)
class RunEnd:
    """End a run that has not ended yet (see :mod:`offload.engine.runs`, its only writer).

    Sets ``status`` (``failed`` or ``cancelled``), ``error`` and ``ended_at``; drops the
    run's queue items (callbacks stay) and waits and frees its concurrency slots. The
    ``events`` (its lifecycle events) are written only if the run ended here, so they
    are emitted once however many enders race.
    """

    run_id: str
    status: RunStatus
    at: datetime
    error: Any = None
    events: list[NewEvent] = field(default_factory=list)


@dataclass(slots=True)
class BulkProgress:
    """Counts to add to a bulk job, and its new status once it ends (running jobs only)."""

    job_id: str
    done: int = 0
    skipped: int = 0
    status: str | None = None
    error: str | None = None
    at: datetime | None = None


@dataclass(slots=True)
class Change:
    """Everything one unit of work writes, committed in one transaction."""

    fence: Fence | None = None
    keep_fenced_item: bool = False
    events: list[NewEvent] = field(default_factory=list)
    runs: list[NewRun] = field(default_factory=list)
    run_patches: list[RunPatch] = field(default_factory=list)
    steps: list[StepWrite] = field(default_factory=list)
    items: list[NewItem] = field(default_factory=list)
    waits: list[NewWait] = field(default_factory=list)
    delete_waits_of_runs: list[str] = field(default_factory=list)
    resumes: list[Resume] = field(default_factory=list)
    cron_tick: tuple[str, datetime] | None = None
    bulk_jobs: list[BulkJob] = field(default_factory=list)
    bulk_progress: list[BulkProgress] = field(default_factory=list)
    ends: list[RunEnd] = field(default_factory=list)
    """Runs to end (after everything else in the change); see :class:`RunEnd`."""


@dataclass(slots=True)
class ChangeResult:
    """What :meth:`Store.apply` did: runs and events with whether each was new."""

    runs: list[tuple[Run, bool]] = field(default_factory=list)
    events: list[tuple[Event, bool]] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    cron_fired: bool = True
    enqueued: int = 0
    outcomes: list[str] = field(default_factory=list)
    """Per entry of ``runs``: created, duplicate, debounced, batched, rate_limited, skipped."""
    cancelled: list[str] = field(default_factory=list)
    """Runs cancelled by this change (a singleton in ``cancel`` mode replaced them)."""
    ended: list[Run] = field(default_factory=list)
    """The runs of ``Change.ends`` that ended here (not those that had ended already)."""


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Filters for :meth:`Store.run_list`; None means no filter."""

    statuses: tuple[RunStatus, ...] = ()
    function_id: str | None = None
    queue: str | None = None
    event_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    search: str | None = None
    event_name: str | None = None
    """Runs started by an event of this name."""
    name: str | None = None
    """HTTP tasks with this ``name``."""
    unreplayed: bool = False
    """Only runs that no run replays (the failed view drains as runs are replayed)."""
    correlation_id: str | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list, newest first, and the cursor of the next page."""

    data: list[T]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Rescued:
    """A queue item whose lease expired: made due again, or given up on."""

    item_id: str
    run_id: str | None
    expiries: int
    exhausted: bool


class Store(Protocol):
    """What the engine needs from a database. Methods are sorted by noun."""

    url: str

    async def open(self) -> None:
        """Connect and apply pending migrations."""

    async def close(self) -> None:
        """Release connections."""

    async def ping(self) -> None:
        """Raise StoreUnavailableError unless the database answers."""

    def add_listener(self, callback: Any) -> None:
        """Call ``callback()`` (no arguments, from the event loop) when new work may be due."""

    async def api_key_insert(self, *, key: ApiKey, key_hash: str) -> None:
        """Store a new API key by its hash."""

    async def api_key_find(self, *, key_hash: str) -> ApiKey | None:
        """The unrevoked key with this hash, or None."""

    async def api_key_list(self) -> list[ApiKey]:
        """Every key, newest first."""

    async def api_key_revoke(self, *, key_id: str, at: datetime) -> bool:
        """Revoke a key; False if there is no such key."""

    async def app_delete(self, *, app_id: str) -> bool:
        """Remove an app and its functions."""

    async def app_get(self, *, app_id: str) -> App | None:
        """One app."""

    async def app_list(self) -> list[App]:
        """Every app."""

    async def app_set_sync_error(self, *, app_id: str, error: str | None, at: datetime) -> None:
        """Record the outcome of the last sync attempt."""

    async def app_sync(
        self, *, app: App, functions: list[Function]
    ) -> bool:
        """Upsert the app and replace its function set atomically; False if unchanged."""

    async def apply(self, change: Change) -> ChangeResult:
        """Commit a change atomically; raise LeaseLostError if its fence no longer holds."""

    async def bulk_job_get(self, *, job_id: str) -> BulkJob | None:
        """One bulk job."""

    async def cron_last_tick(self, *, function_id: str) -> datetime | None:
        """The latest tick recorded for a cron function."""

    async def event_get(self, *, event_id: str) -> Event | None:
        """One event."""

    async def event_get_many(self, *, event_ids: list[str]) -> list[Event]:
        """The events with these ids that exist, in the order of ``event_ids``."""

    async def event_list(
        self, *, name: str | None, after: datetime | None, before: datetime | None,
        cursor: str | None, limit: int,
    ) -> Page[Event]:
        """Events newest first."""

    async def function_get(self, *, function_id: str) -> Function | None:
        """One function."""

    async def function_list(self, *, app_id: str | None = None) -> list[Function]:
        """Functions, optionally of one app."""

    async def lease_renew(self, *, owner: str, until: datetime) -> int:
        """Extend every live lease held by ``owner``; the number renewed."""

    async def lease_release(self, *, owner: str) -> int:
        """Hand back every lease ``owner`` holds (graceful shutdown); the number released."""

    async def lease_expire_owned(self, *, owner_prefix: str, now: datetime) -> int:
        """Expire at ``now`` every lease whose owner starts with ``owner_prefix``.

        An engine restarting under its node identity takes back the leases its previous
        process held (that process is dead), so the next rescue makes them due at once.
        """

    async def lease_rescue_expired(
        self, *, now: datetime, max_expiries: int
    ) -> list[Rescued]:
        """Make items with expired leases due again; fail runs past ``max_expiries``."""

    async def queue_claim(
        self, *, owner: str, token: str, now: datetime, limit: int, lease_until: datetime,
        kinds: tuple[ItemKind, ...] | None = None,
    ) -> list[QueueItem]:
        """Lease up to ``limit`` due items, earliest first; marks their runs running."""

    async def queue_depth(self) -> dict[str, int]:
        """Queued items per queue name."""

    async def queue_next_due(self) -> datetime | None:
        """When the earliest unleased item becomes due."""

    async def queue_release(self, *, fence: Fence, due_at: datetime) -> bool:
        """Give a claimed item back, due at ``due_at``; False if the lease moved on."""

    async def run_cancel(
        self, *, run_id: str, at: datetime, error: dict[str, Any]
    ) -> Run | None:
        """Cancel a run that has not ended: drop its items and waits. None if already ended."""

    async def run_count(self, *, filter: RunFilter) -> int:
        """How many runs ``filter`` selects."""

    async def run_get(self, *, run_id: str, with_steps: bool = True) -> Run | None:
        """One run, with its steps in order."""

    async def run_get_many(self, run_ids: Sequence[str]) -> dict[str, Run]:
        """The runs with these ids that exist (without steps), by id: one read for many."""

    async def run_list(
        self, *, filter: RunFilter, cursor: str | None, limit: int
    ) -> Page[Run]:
        """Runs newest first (without steps)."""

    async def run_prune(self, *, ended_before: datetime, limit: int) -> int:
        """Delete up to ``limit`` ended runs (with steps) and old events; the number deleted."""

    async def wait_list(self, *, event_name: str | None = None,
                        correlation_id: str | None = None) -> list[Wait]:
        """Waits for an event name, or for an invoked run's correlation id."""

    # -- engine processes (heartbeats) ---------------------------------------------------

    async def engine_heartbeat(self, *, engine: EngineInfo) -> None:
        """Insert this engine's row, or move its heartbeat forward."""

    async def engine_delete(self, *, engine_id: str) -> None:
        """Forget an engine (it stopped cleanly)."""

    async def engine_prune(self, *, heartbeat_before: datetime) -> int:
        """Forget engines silent since before ``heartbeat_before``; how many."""

    async def engine_list(self) -> list[EngineInfo]:
        """Known engines, most recent heartbeat first, with the leases each holds."""

    async def run_next_attempts(self, *, run_ids: Sequence[str]) -> dict[str, datetime]:
        """For each run waiting for an attempt (a delay, a retry, a sleep), when it is due."""

    # -- dashboard sessions (see offload.store.sessions) ---------------------------------

    async def dashboard_session_insert(self, *, sid: str, login: str, credential: str,
                                       at: datetime, expires_at: datetime) -> None:
        """Record a new logged-in session (and forget expired ones)."""

    async def dashboard_session_credential(self, *, sid: str, at: datetime) -> str | None:
        """The credential fingerprint a live session was opened with; None if it ended."""

    async def dashboard_session_delete(self, *, sid: str | None = None) -> int:
        """End one session (logout), or every session (``sid`` None); how many ended."""

    async def run_replays(self, *, run_ids: Sequence[str]) -> dict[str, str]:
        """For each of ``run_ids`` that was replayed: the id of its newest replay."""

    async def run_count_upto(self, *, filter: RunFilter, limit: int) -> int:
        """The runs ``filter`` selects, counted up to ``limit`` (cheap on large tables)."""

    # -- inbound webhooks and secrets (store/webhooks.py) ----------------------------------

    async def webhook_insert(self, *, webhook: Webhook) -> None:
        """Store a new webhook."""

    async def webhook_update(self, *, webhook: Webhook) -> bool:
        """Replace a webhook's fields; False if it is gone."""

    async def webhook_get(self, *, webhook_id: str) -> Webhook | None:
        """One webhook."""

    async def webhook_list(self) -> list[Webhook]:
        """Every webhook, newest first."""

    async def webhook_delete(self, *, webhook_id: str) -> bool:
        """Remove a webhook and its delivery records."""

    async def webhook_deliver(self, *, delivery: WebhookDelivery,
                              change: Change) -> tuple[WebhookDelivery, bool]:
        """Record an accepted delivery and apply ``change`` atomically; a repeated
        delivery id writes nothing and returns the first delivery with False."""

    async def webhook_delivery_list(self, *, webhook_id: str, cursor: str | None,
                                    limit: int) -> Page[WebhookDelivery]:
        """A webhook's deliveries, newest first."""

    async def webhook_delivery_prune(self, *, received_before: datetime, limit: int) -> int:
        """Delete up to ``limit`` old delivery records."""

    async def secret_put(self, *, name: str, ciphertext: str, at: datetime) -> bool:
        """Store or replace an encrypted secret; True if new."""

    async def secret_get_many(self, *, names: list[str]) -> dict[str, str]:
        """Encrypted values of the named secrets that exist."""

    async def secret_list(self) -> list[SecretInfo]:
        """Names and dates of every secret."""

    async def secret_delete(self, *, name: str) -> bool:
        """Remove a secret."""

    async def secret_stored_count(self) -> int:
        """Encrypted values stored (secrets and webhook secrets)."""

    # -- statistics for the dashboard and /metrics (read-only) ---------------------------

    async def function_stats(self, *, since: datetime, limit: int = 10_000) -> list[FunctionStat]:
        """Outcomes and duration percentiles per function of the latest ``limit`` runs ended
        at or after ``since``."""

    async def queue_stats(self, *, now: datetime) -> list[QueueStat]:
        """Queue items per (queue, function, kind): due, scheduled, leased, oldest due time."""

    async def run_count_by_status(self) -> dict[tuple[str, str], int]:
        """The number of runs per ``(function_id, status)``."""

    async def run_stats(self, *, since: datetime, bucket_s: int) -> list[RunBucket]:
        """Runs created and ended per time bucket since ``since``, oldest bucket first."""


@dataclass(frozen=True, slots=True)
class QueueStat:
    """Queue items of one (queue, function, kind); ``function_id`` is None for event items."""

    queue: str
    function_id: str | None
    kind: str
    due: int
    """Unleased items whose due time has come: the backlog."""
    scheduled: int
    """Unleased items due later (delays, retries, sleeps)."""
    leased: int
    """Items being worked on (in flight)."""
    oldest_due_at: datetime | None
    """Due time of the oldest unleased due item; None when nothing is due."""


@dataclass(frozen=True, slots=True)
class RunBucket:
    """Runs in one time bucket. ``created``/lag are by creation time, the rest by end time."""

    start: datetime
    created: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    lag_avg_ms: float | None = None
    """Mean time from creation to first attempt of the runs created in this bucket
    (includes any requested delay)."""
    lag_max_ms: int | None = None


@dataclass(frozen=True, slots=True)
class FunctionStat:
    """Recent outcomes and durations (start to end) of one function's runs."""

    function_id: str
    completed: int
    failed: int
    cancelled: int
    p50_ms: int | None
    p95_ms: int | None
    p99_ms: int | None

    @property
    def failure_rate(self) -> float:
        """Failed runs over completed and failed runs (0 when there are none)."""
        done = self.completed + self.failed
        return self.failed / done if done else 0.0


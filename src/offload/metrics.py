"""Prometheus metrics: every metric name offload exposes, in one place.

Two kinds:

* **Things that happen** (step durations, outbound calls by outcome, pickup lag,
  retries, store latency) are counters and histograms in this process, bumped by
  the engine through the small ``observe_*``/``count_*`` functions below. They
  reset when the process restarts and each engine reports its own (sum them across
  instances in PromQL). The processes of one ``serve --workers N`` count as one
  engine: the parent names a fresh directory in ``PROMETHEUS_MULTIPROC_DIR``
  (:func:`share_across_processes`) before starting them, each writes its values
  there (prometheus_client's multiprocess mode) and a scrape of any API front
  answers their sums (:class:`MultiProcessCollector`). A ``Gauge`` added here would
  need a ``multiprocess_mode`` (``livesum`` for things in progress, ``max`` for
  last-seen times); there is none today.
* **Counts of stored state** (runs by status, queue depth, oldest due age,
  dead-letter size) are read from the store at scrape time by
  :class:`StoreCollector`, so every engine sharing a database reports the same
  numbers and nothing drifts after a restart. Scrape them from one instance. They
  are read by the process answering the scrape, once, never summed.

Names follow ``offload_<noun>_<unit>`` with Prometheus suffixes. Labels never
carry secrets, URLs, ids of single runs or error text (bounded cardinality).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from offload import __version__
from offload.errors import StoreError
from offload.store.base import Store
from offload.store.ops import OpsQueries

T = TypeVar("T")

# -- names -----------------------------------------------------------------------------------

STEP_DURATION = "offload_step_duration_seconds"
OUTBOUND_REQUESTS = "offload_outbound_requests_total"
OUTBOUND_DURATION = "offload_outbound_request_duration_seconds"
PICKUP_LAG = "offload_pickup_lag_seconds"
RETRIES = "offload_retries_total"
STORE_DURATION = "offload_store_operation_duration_seconds"
RUN_ENDS = "offload_run_ends_total"

INFO = "offload_info"
STORE_UP = "offload_store_up"
RUNS = "offload_runs"
DEAD_LETTER = "offload_dead_letter_runs"
QUEUE_DEPTH = "offload_queue_depth"
QUEUE_SCHEDULED = "offload_queue_scheduled"
QUEUE_INFLIGHT = "offload_queue_inflight"
QUEUE_OLDEST_DUE_AGE = "offload_queue_oldest_due_age_seconds"
PAUSED = "offload_paused"
ALERT_FIRING = "offload_alert_firing"

ALL_NAMES = (STEP_DURATION, OUTBOUND_REQUESTS, OUTBOUND_DURATION, PICKUP_LAG, RETRIES,
             STORE_DURATION, RUN_ENDS, INFO, STORE_UP, RUNS, DEAD_LETTER, QUEUE_DEPTH,
             QUEUE_SCHEDULED, QUEUE_INFLIGHT, QUEUE_OLDEST_DUE_AGE, PAUSED, ALERT_FIRING)

# -- things that happen (this process) -------------------------------------------------------

REGISTRY = CollectorRegistry(auto_describe=True)
"""The process's event metrics. Not the prometheus_client default registry, so importing
offload into an app that has its own metrics adds nothing to that app's registry."""

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_SHARED_DIR = os.environ.get(MULTIPROCESS_ENV) or None
"""Read once at import, as prometheus_client does to choose where values live: set, this
process's values are files in that directory and a scrape sums every process's files."""


def share_across_processes(directory: Path) -> None:
    """For the ``serve --workers`` parent, before it starts its children: their event
    metrics go to ``directory`` (made empty now) and any one's scrape sums them all."""
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in directory.glob("*.db"):
        leftover.unlink()
    os.environ[MULTIPROCESS_ENV] = str(directory)


def process_exited(pid: int) -> None:
    """For the ``serve --workers`` parent: child ``pid`` exited (drops its live gauges;
    its counters keep counting in the sums)."""
    directory = os.environ.get(MULTIPROCESS_ENV)
    if directory:
        mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]

_CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)

_step_duration = Histogram(
    STEP_DURATION.removesuffix("_seconds"), "Duration of one attempt of a step, by step kind "
    "(request, callback, run, ...) and the status it ended the attempt in.",
    ["kind", "status"], unit="seconds", buckets=_CALL_BUCKETS, registry=REGISTRY)
_outbound_requests = Counter(
    OUTBOUND_REQUESTS.removesuffix("_total"), "HTTP requests offload made to task targets, "
    "callbacks and apps, by outcome (success, retry, fail).",
    ["kind", "outcome"], registry=REGISTRY)
_outbound_duration = Histogram(
    OUTBOUND_DURATION.removesuffix("_seconds"), "Duration of HTTP requests offload made, by "
    "kind and outcome.", ["kind", "outcome"], unit="seconds", buckets=_CALL_BUCKETS,
    registry=REGISTRY)
_pickup_lag = Histogram(
    PICKUP_LAG.removesuffix("_seconds"), "Time from a queue item's due time until this "
    "engine started working on it, by item kind.", ["kind"], unit="seconds",
    buckets=_LAG_BUCKETS, registry=REGISTRY)
_retries = Counter(
    RETRIES.removesuffix("_total"), "Attempts that failed and were scheduled again, by what "
    "was retried (request, callback, step).", ["kind"], registry=REGISTRY)
_store_duration = Histogram(
    STORE_DURATION.removesuffix("_seconds"), "Latency of store operations made by the "
    "engine's hot path, by operation.", ["operation"], unit="seconds",
    buckets=_STORE_BUCKETS, registry=REGISTRY)

_run_ends = Counter(
    RUN_ENDS.removesuffix("_total"), "Runs this engine ended, by kind (task, function), "
    "status (completed, failed, cancelled) and reason (attempt, api, dashboard, bulk, "
    "start_timeout, finish_timeout, cancel_event, singleton, lease_exhausted, ...).",
    ["kind", "status", "reason"], registry=REGISTRY)


_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def _child(metric: Counter | Histogram, *labels: str) -> Any:
    """``metric.labels(*labels)``, looked up once: the hot paths call these per attempt and
    ``labels()`` costs several times the observation itself. Label values are few
    (kinds, statuses, outcomes), so the cache stays small."""
    key = (id(metric), labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def count_run_end(kind: str, status: str, reason: str) -> None:
    """A run of ``kind`` ended as ``status`` because of ``reason``."""
    _child(_run_ends, kind, status, reason).inc()


def observe_step(kind: str, status: str, seconds: float) -> None:
    """One attempt of a step of ``kind`` took ``seconds`` and left it in ``status``."""
    _child(_step_duration, kind, status).observe(max(0.0, seconds))


def observe_outbound(kind: str, outcome: str, seconds: float) -> None:
    """One outbound request (``kind``: target, callback, app) ended with ``outcome``."""
    _child(_outbound_requests, kind, outcome).inc()
    _child(_outbound_duration, kind, outcome).observe(max(0.0, seconds))


def observe_pickup_lag(seconds: float, kind: str = "run") -> None:
    """A queue item of ``kind`` was picked up ``seconds`` after it became due."""
    _child(_pickup_lag, kind).observe(max(0.0, seconds))


def count_retry(kind: str) -> None:
    """An attempt of ``kind`` failed and another was scheduled."""
    _child(_retries, kind).inc()


def observe_store(operation: str, seconds: float) -> None:
    """A store ``operation`` took ``seconds`` (successful or not)."""
    _child(_store_duration, operation).observe(max(0.0, seconds))


async def timed_store(operation: str, awaitable: Awaitable[T]) -> T:
    """Await a store call and record its latency: ``await timed_store("apply", s.apply(c))``."""
    started = time.perf_counter()
    try:
        return await awaitable
    finally:
        observe_store(operation, time.perf_counter() - started)


# -- stored state (read at scrape time) ------------------------------------------------------

@dataclass
class StoreSnapshot:
    """What the store said at scrape time; ``error`` set when it could not be read."""

    at: datetime
    runs: dict[tuple[str, str], int] = field(default_factory=dict)
    queues: list[tuple[str, str, int, int, int, float | None]] = field(default_factory=list)
    """(queue, function, due, scheduled, leased, oldest due age in seconds)."""
    paused: list[tuple[str, str]] = field(default_factory=list)
    """(kind, target) of each paused function or queue."""
    alerts: list[tuple[str, int]] = field(default_factory=list)
    """(rule id, 1 if firing else 0) of each evaluated alert rule."""
    error: str | None = None


async def read_store(store: Store, at: datetime) -> StoreSnapshot:
    """Read the counts the gauges report. Store errors give a snapshot with ``error`` set."""
    snapshot = StoreSnapshot(at=at)
    try:
        snapshot.runs = await store.run_count_by_status()
        stats = await store.queue_stats(now=at)
        if isinstance(store, OpsQueries):
            snapshot.paused = [(p.kind, p.target) for p in await store.pause_list()]
            snapshot.alerts = [(s.rule_id, int(s.status == "firing"))
                               for s in await store.alert_state_list()]
    except StoreError as exc:
        snapshot.error = type(exc).__name__
        return snapshot
    merged: dict[tuple[str, str], list[float | None]] = {}
    for s in stats:
        key = (s.queue, s.function_id or "")
        acc = merged.setdefault(key, [0, 0, 0, None])
        acc[0] = (acc[0] or 0) + s.due
        acc[1] = (acc[1] or 0) + s.scheduled
        acc[2] = (acc[2] or 0) + s.leased
        if s.oldest_due_at is not None:
            age = max(0.0, (at - s.oldest_due_at).total_seconds())
            acc[3] = age if acc[3] is None else max(acc[3], age)
    snapshot.queues = [(q, f, int(a[0] or 0), int(a[1] or 0), int(a[2] or 0), a[3])
                       for (q, f), a in sorted(merged.items())]
    return snapshot


class StoreCollector(Collector):
    """Gauges computed from one :class:`StoreSnapshot`."""

    def __init__(self, snapshot: StoreSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        """The gauges of the snapshot."""
        snap = self.snapshot
        info = GaugeMetricFamily(INFO, "offload build information.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        up = GaugeMetricFamily(STORE_UP, "1 if the store answered this scrape, else 0.")
        up.add_metric([], 0 if snap.error else 1)
        yield up
        if snap.error:
            return
        runs = GaugeMetricFamily(RUNS, "Runs in the store by function and status (pruned "
                                 "after the retention period).", labels=["function", "status"])
        dead = GaugeMetricFamily(DEAD_LETTER, "Failed runs in the store (the dead-letter "
                                 "view), by function.", labels=["function"])
        for (function_id, status), count in sorted(snap.runs.items()):
            runs.add_metric([function_id, status], count)
            if status == "failed":
                dead.add_metric([function_id], count)
        yield runs
        yield dead
        depth = GaugeMetricFamily(QUEUE_DEPTH, "Queue items due and waiting for an engine "
                                  "(the backlog), by queue and function.",
                                  labels=["queue", "function"])
        scheduled = GaugeMetricFamily(QUEUE_SCHEDULED, "Queue items due later (delays, "
                                      "retries, sleeps), by queue and function.",
                                      labels=["queue", "function"])
        inflight = GaugeMetricFamily(QUEUE_INFLIGHT, "Queue items leased by an engine, by "
                                     "queue and function.", labels=["queue", "function"])
        oldest = GaugeMetricFamily(QUEUE_OLDEST_DUE_AGE, "Seconds since the oldest waiting "
                                   "item became due (0 when nothing waits), by queue and "
                                   "function.", labels=["queue", "function"])
        for queue, function_id, due, later, leased, age in snap.queues:
            depth.add_metric([queue, function_id], due)
            scheduled.add_metric([queue, function_id], later)
            inflight.add_metric([queue, function_id], leased)
            oldest.add_metric([queue, function_id], age or 0.0)
        yield depth
        yield scheduled
        yield inflight
        yield oldest
        paused = GaugeMetricFamily(PAUSED, "1 for each paused function or queue (its runs "
                                   "queue up, none starts).", labels=["kind", "target"])
        for kind, target in snap.paused:
            paused.add_metric([kind, target], 1)
        yield paused
        firing = GaugeMetricFamily(ALERT_FIRING, "1 while a built-in alert rule fires, else "
                                   "0, by rule id.", labels=["rule"])
        for rule_id, value in snap.alerts:
            firing.add_metric([rule_id], value)
        yield firing


class _Scrape(Collector):
    def __init__(self, snapshot: StoreSnapshot) -> None:
        self.store = StoreCollector(snapshot)

    def collect(self) -> Iterator[Metric]:
        if _SHARED_DIR is None:
            yield from REGISTRY.collect()
        else:  # every process's files, this one's included (REGISTRY would repeat them)
            yield from MultiProcessCollector(None, _SHARED_DIR).collect()  # type: ignore[no-untyped-call]
        yield from self.store.collect()


def exposition(snapshot: StoreSnapshot) -> bytes:
    """The text exposition of this process's metrics (or, under ``serve --workers``, their
    sum over its processes) plus the snapshot's gauges."""
    return generate_latest(_Scrape(snapshot))

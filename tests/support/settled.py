"""Signals that an engine has finished with something, for tests that check that
something did *not* happen: wait for the engine to have acted, then look, instead of
sleeping and hoping it would have acted by then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.poll import eventually

Get = Callable[[str], httpx.Response]
"""GET a path on the engine (with whatever auth the test's engine needs)."""


def _runless_items(get: Get) -> float:
    """Queue items with no run that are due or leased: accepted events not fanned out yet
    (``offload_queue_depth``/``offload_queue_inflight`` with ``function=""``)."""
    text = get("/metrics").text
    return sum(s.value for f in text_string_to_metric_families(text)
               if f.name in ("offload_queue_depth", "offload_queue_inflight")
               for s in f.samples if s.labels.get("function") == "")


def events_fanned_out(get: Get, timeout: float = 30) -> None:
    """Wait until every event accepted so far has been fanned out.

    Each accepted event has one EVENT queue item; the engine deletes it in the change
    that commits the event's effects (runs started, waits resumed, runs cancelled;
    ``offload.engine.triggers``). Once none is due or in flight, every event sent before
    this call has done all it will ever do.
    """
    eventually(lambda: _runless_items(get) == 0, timeout=timeout, interval=0.05,
               what="every accepted event to be fanned out",
               detail=lambda: f"{_runless_items(get):g} event items due or leased")


def held_by_pause(api: httpx.Client, queue: str, n: int, timeout: float = 30) -> None:
    """Wait until ``n`` items of ``queue`` are held by a pause.

    A RUN item queued under a pause is held when an engine's claim first meets it
    (:func:`offload.store.ops.hold_paused`): once ``held`` counts it, the engine has seen
    the item and given it back instead of starting it. This is the signal that the pause
    was enforced, not a guess at how long an engine might take to start it.
    """
    def state() -> dict[str, Any]:
        body: dict[str, Any] = api.get(f"/v1/queues/{queue}").json()
        return body

    eventually(lambda: state()["held"] == n, timeout=timeout, interval=0.05,
               what=f"{n} items of queue {queue} held by a pause", detail=state)


def queue_drained(api: httpx.Client, queue: str, timeout: float = 30) -> None:
    """Wait until ``queue`` holds no item at all: none due, scheduled, in flight or held.

    Every call the engine makes (an attempt, a retry, a callback) is a leased queue item
    of the run's queue. Once the queue is empty and its runs have ended, no further call
    for them can be made, however long one waits.
    """
    def state() -> dict[str, Any]:
        body: dict[str, Any] = api.get(f"/v1/queues/{queue}").json()
        return body

    def empty() -> bool:
        s = state()
        return s["due"] == s["scheduled"] == s["in_flight"] == s["held"] == 0

    eventually(empty, timeout=timeout, interval=0.05, what=f"queue {queue} to be empty",
               detail=state)


def _our_states_to(port: int) -> list[str]:
    """TCP states (hex, as in /proc/net/tcp) of this process's sockets connected to
    ``port`` on loopback."""
    import os

    ours = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            ours.add(link[8:-1])
    states = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in ours:
                states.append(fields[3])
    return states


CLOSE_WAIT = "08"


def server_closed_our_connections(port: int, timeout: float = 30) -> None:
    """Wait until the server on ``port`` has closed every connection this process keeps
    open to it (each one in CLOSE_WAIT: the peer's FIN received, our side still open),
    e.g. an idle keep-alive connection the server timed out. Fails if there is none."""
    eventually(lambda: (states := _our_states_to(port)) and
               all(s == CLOSE_WAIT for s in states),
               timeout=timeout, interval=0.1,
               what=f"the server on port {port} to close our idle connections",
               detail=lambda: _our_states_to(port))

"""Flow control end to end: real ``offload dev`` engines call a real target on loopback.

Runs once on SQLite and once on PostgreSQL; two engine processes share the database, so
limits are checked across engines. What is measured is what the target saw: the peak
number of calls in flight per path, and the arrival time of each call.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response

from tests.support.engine import EngineProcess
from tests.support.settled import queue_drained
from tests.support.target import Target
from tests.support.tasks import submit


@dataclass
class CountingTarget(Target):
    """A Target that also tracks calls in flight per path and their peak."""

    inflight: Counter[str] = field(default_factory=Counter)
    peak: Counter[str] = field(default_factory=Counter)
    arrivals: dict[str, list[tuple[float, Any]]] = field(
        default_factory=lambda: defaultdict(list))

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        self.inflight[path] += 1
        self.peak[path] = max(self.peak[path], self.inflight[path])
        body = await request.body()
        self.arrivals[path].append((time.monotonic(), orjson.loads(body) if body else None))
        try:
            return await super()._handle(request)
        finally:
            self.inflight[path] -= 1


@pytest.fixture(scope="module")
def database_url(module_store_url: str) -> str:
    """Each store in turn, one database for the whole module."""
    return module_store_url


@pytest.fixture(scope="module")
def engines(database_url: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[EngineProcess]]:
    procs = [EngineProcess(tmp_path_factory.mktemp("engine"), database_url=database_url,
                           env={"OFFLOAD_WEBHOOK_SECRET": "whsec_" + "A" * 32})
             for _ in range(2)]
    procs[0].start()
    procs[1].start()  # after the first one migrated
    yield procs
    for proc in procs:
        proc.kill()


@pytest.fixture(scope="module")
def target() -> Iterator[CountingTarget]:
    t = CountingTarget().start()
    yield t
    t.stop()


@pytest.fixture
def api(engines: list[EngineProcess]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=engines[0].url, timeout=30.0) as client:
        yield client


def submit_batch(api: httpx.Client, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = api.post("/v1/tasks/batch", json={"tasks": tasks})
    assert response.status_code == 202, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def wait_count(target: CountingTarget, path: str, n: int, timeout: float = 60.0) -> None:
    target.wait_for(lambda: len(target.arrivals[path]) >= n, timeout=timeout)


# -- concurrency ---------------------------------------------------------------------------


def test_concurrency_key_and_queue_limits_hold_at_the_target(
        api: httpx.Client, target: CountingTarget, tag: str) -> None:
    keyed, queued = f"/{tag}/keyed", f"/{tag}/queued"
    target.script(keyed, (200, {}, b"ok", 0.25))
    target.script(queued, (200, {}, b"ok", 0.25))
    tasks = [{"url": target.url + keyed, "body": i, "concurrency_key": f"{tag}-k",
              "concurrency_limit": 3, "queue": f"{tag}-a"} for i in range(24)]
    tasks += [{"url": target.url + queued, "body": i, "concurrency": 2, "queue": f"{tag}-q"}
              for i in range(16)]
    submit_batch(api, tasks)
    wait_count(target, keyed, 24)
    wait_count(target, queued, 16)
    assert target.peak[keyed] == 3  # reached, never above
    assert target.peak[queued] == 2


def test_saturated_key_does_not_delay_other_keys(
        api: httpx.Client, target: CountingTarget, tag: str) -> None:
    slow, fast = f"/{tag}/slow", f"/{tag}/fast"
    target.script(slow, (200, {}, b"ok", 2.0))
    submit_batch(api, [{"url": target.url + slow, "concurrency_key": f"{tag}-a",
                        "concurrency_limit": 2, "queue": tag} for _ in range(400)])
    wait_count(target, slow, 2)
    # a task of a third key reaching the target shows the engines' claims have gone
    # past key A's saturated backlog: the state in which key B is measured
    submit(api, url=target.url + f"/{tag}/probe", concurrency_key=f"{tag}-c",
           concurrency_limit=1, queue=tag)
    wait_count(target, f"/{tag}/probe", 1, timeout=10)
    sent = time.monotonic()
    submit_batch(api, [{"url": target.url + fast, "body": i, "concurrency_key": f"{tag}-b",
                        "concurrency_limit": 5, "queue": tag} for i in range(5)])
    wait_count(target, fast, 5, timeout=10)
    latency = max(t for t, _ in target.arrivals[fast]) - sent
    assert latency < 1.5, f"key B waited {latency:.2f}s behind key A's backlog"
    assert target.peak[slow] <= 2


def test_priority_orders_starts_under_a_saturated_limit(
        api: httpx.Client, target: CountingTarget, tag: str) -> None:
    block, path = f"/{tag}/block", f"/{tag}/prio"
    target.script(block, (200, {}, b"ok", 1.5))
    common = {"concurrency_key": f"{tag}-p", "concurrency_limit": 1, "queue": tag}
    submit(api, url=target.url + block, **common)
    wait_count(target, block, 1)
    priorities = [0, 100, 300, 200, 50]
    submit_batch(api, [{"url": target.url + path, "body": p, "priority": p, **common}
                       for p in priorities])
    wait_count(target, path, len(priorities))
    assert [body for _, body in target.arrivals[path]] == sorted(priorities, reverse=True)
    assert target.peak[path] == 1


# -- idempotency (throttle, rate limit and debounce over time: test_flow_in_process.py) --


def test_exactly_one_run_per_idempotency_key_under_concurrent_posts(
        engines: list[EngineProcess], target: CountingTarget, tag: str) -> None:
    path = f"/{tag}/idem"

    async def post_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30.0) as client:
            return await asyncio.gather(*[
                client.post(f"{engines[i % 2].url}/v1/tasks",
                            json={"url": target.url + path, "idempotency_key": tag,
                                  "queue": tag}) for i in range(50)])

    responses = asyncio.run(post_all())
    assert sorted(r.status_code for r in responses) == [200] * 49 + [202]
    assert len({r.json()["id"] for r in responses}) == 1
    wait_count(target, path, 1)
    with httpx.Client(base_url=engines[0].url, timeout=30) as api:
        queue_drained(api, tag)  # its queue holds nothing more: no second call can come
    assert len(target.arrivals[path]) == 1

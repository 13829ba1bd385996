"""HTTP-task flow control over time, in-process on both stores, with a fake clock.

The real engine services (``tests/support/inprocess.py``) call a scripted target
through the outbound transport seam; the clock only moves when a test moves it, so
"nothing else happens for the next minute" is checked exactly and without sleeping.
(Limits across two engine processes are checked in ``test_flow_http_tasks.py``.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from offload.api.v1.tasks import TaskIn
from offload.engine import pause as pausing
from offload.store.base import Change
from tests.support.inprocess import InProcessEngine, in_process_engine

TARGET = "http://target.test/flow"


@pytest.fixture
async def eng(tmp_path: Path, store_url: str) -> AsyncIterator[InProcessEngine]:
    async with in_process_engine(tmp_path, database_url=store_url) as e:
        e.app.script(TARGET, (200, {}, b"ok"))
        yield e


async def _submit(eng: InProcessEngine, **fields: Any) -> str:
    result = await eng.store.apply(Change(runs=[
        TaskIn.model_validate({"url": TARGET, **fields}).new_run(eng.clock.now())]))
    return result.outcomes[0]


def _calls(eng: InProcessEngine) -> list[Any]:
    return [body for _, url, body in eng.app.requests if url.startswith(TARGET)]


async def test_debounce_fires_once_with_the_last_task_after_a_quiet_period(
        eng: InProcessEngine) -> None:
    outcomes = []
    for n in range(5):
        outcomes.append(await _submit(eng, body={"n": n}, queue="d",
                                      debounce={"period": "1s", "key": "k"}))
        await eng.advance(0.2)
    assert outcomes == ["created"] + ["debounced"] * 4
    await eng.advance(0.7)  # 0.9 s after the last task: still quiet
    assert _calls(eng) == []
    await eng.advance(0.1)
    assert _calls(eng) == [b'{"n":4}']
    await eng.advance(60)
    assert len(_calls(eng)) == 1


async def test_rate_limit_drops_and_throttle_spreads(eng: InProcessEngine) -> None:
    outcomes = [await _submit(eng, body=i, queue="r", rate_limit={"limit": 3, "period": "1m"})
                for i in range(10)]
    assert outcomes == ["created"] * 3 + ["rate_limited"] * 7
    await eng.settle()
    assert len(_calls(eng)) == 3
    await eng.advance(120)
    assert len(_calls(eng)) == 3  # dropped, not delayed
    eng.app.requests.clear()
    for i in range(12):
        assert await _submit(eng, body=i, queue="t",
                             throttle={"limit": 4, "period": "1s"}) == "created"
    started: list[float] = []
    for tick in range(1, 61):  # 50 ms steps over 3 s
        before = len(_calls(eng))
        await eng.advance(0.05) if tick > 1 else await eng.settle()
        started += [tick * 0.05] * (len(_calls(eng)) - before)
    assert len(started) == 12
    for i, t in enumerate(started):  # at most limit + burst starts in any 1 s window
        assert sum(1 for u in started[i:] if u - t < 1.0) <= 5, started
    assert 2.5 <= started[-1] - started[0] <= 3.0, started  # 11 intervals of 250 ms


async def test_resumed_backlog_keeps_to_the_queue_throttle(eng: InProcessEngine) -> None:
    """A queue paused past its throttled tasks' due times: on resume the overdue backlog
    starts one a period, in order, not in a burst; a task arriving then queues behind it.
    (Was ``test_pause.py``'s real-engine test, which slept 4.5 s to make them overdue.)"""
    assert await pausing.pause(eng.store, "queue", "thr")
    throttle = {"limit": 1, "period": "1s"}
    for i in range(4):
        assert await _submit(eng, body={"i": i}, queue="thr", throttle=throttle) == "created"
    await eng.settle()
    await eng.advance(4.5)  # every one of them is overdue by now
    assert _calls(eng) == []
    [held] = [q for q in await pausing.queues(eng.store) if q.name == "thr"]
    assert held.held == 4, held
    assert await pausing.resume(eng.store, "queue", "thr")
    starts: list[float] = []
    for tick in range(1, 101):  # 50 ms steps over 5 s
        before = len(_calls(eng))
        await eng.advance(0.05) if tick > 1 else await eng.settle()
        starts += [tick * 0.05] * (len(_calls(eng)) - before)
        if tick == 60:  # a task arriving now queues behind the backlog, not beside it
            assert await _submit(eng, body={"i": 4}, queue="thr",
                                 throttle=throttle) == "created"
    assert _calls(eng) == [b'{"i":%d}' % i for i in range(5)]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) > 0.8, starts  # one a second, no burst

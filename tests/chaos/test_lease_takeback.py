"""Lease takeback: an engine restarted after ``kill -9`` retries its in-flight work at once.

Promise (docs/guarantees.md §3): work a killed engine held under lease is retried
within seconds of the restart, not after the lease (30 s here) runs out. The
restarted process has the same node identity (the data dir's ``node_id`` and a
free ``node-slots`` lock), so the leases under it belong to a dead process.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.support.engine import EngineProcess
from tests.support.poll import eventually
from tests.support.target import Target

pytestmark = pytest.mark.chaos

TASKS = 12
LEASE_S = "30"


def test_kill9_then_restart_retries_in_flight_work_within_seconds(
        store_url: str, tmp_path: Path) -> None:
    target = Target().start()
    for n in range(TASKS):  # the first call hangs (the engine dies under it), the retry is quick
        target.script(f"/hang/{n}", (200, {}, b"late", 60.0), (200, {}, b"ok", 0.0))
    engine = EngineProcess(tmp_path / "data", database_url=store_url,
                           env={"OFFLOAD_LEASE_S": LEASE_S}).start()
    try:
        with httpx.Client(base_url=engine.url, timeout=30) as client:
            response = client.post("/v1/tasks/batch", json={"tasks": [
                {"url": f"{target.url}/hang/{n}", "retries": 3, "timeout": 90}
                for n in range(TASKS)]})
            assert response.status_code == 202, response.text
            ids = [d["id"] for d in response.json()["data"]]
        eventually(lambda: len({r.path for r in target.received}) >= TASKS, timeout=20,
                   what=f"all {TASKS} calls to start")
        engine.kill()
        engine.start()
        restarted = time.monotonic()
        with httpx.Client(base_url=engine.url, timeout=30) as client:
            def statuses() -> list[str]:
                return [client.get(f"/v1/runs/{i}").json()["status"] for i in ids]

            eventually(lambda: all(s == "completed" for s in statuses()), timeout=8,
                       interval=0.2, what="the in-flight work to be retried after the restart",
                       detail=lambda: f"{statuses()}\n{engine.logs()}")
        took = time.monotonic() - restarted
        assert all(len(target.at(f"/hang/{n}")) == 2 for n in range(TASKS))
        print(f"in-flight work of the killed engine completed {took:.1f}s after the restart")
    finally:
        engine.kill()
        target.stop()


def test_second_engine_on_the_same_data_dir_takes_back_nothing(
        store_url: str, tmp_path: Path) -> None:
    """A live engine's slot is locked: another process on the same data dir gets a new slot
    and leaves the live engine's leases alone (no duplicate delivery)."""
    target = Target().start()
    for n in range(4):
        target.script(f"/slow/{n}", (200, {}, b"ok", 3.0))
    data = tmp_path / "data"
    first = EngineProcess(data, database_url=store_url, env={"OFFLOAD_LEASE_S": LEASE_S}).start()
    second = EngineProcess(data, database_url=store_url, env={"OFFLOAD_LEASE_S": LEASE_S})
    try:
        with httpx.Client(base_url=first.url, timeout=30) as client:
            response = client.post("/v1/tasks/batch", json={"tasks": [
                {"url": f"{target.url}/slow/{n}", "timeout": 30} for n in range(4)]})
            assert response.status_code == 202, response.text
            ids = [d["id"] for d in response.json()["data"]]
        eventually(lambda: len(target.received) >= 4, timeout=20, what="all 4 calls to start")
        second.start()
        with httpx.Client(base_url=first.url, timeout=30) as client:
            eventually(lambda: all(client.get(f"/v1/runs/{i}").json()["status"] == "completed"
                                   for i in ids),
                       timeout=20, interval=0.2, what="all 4 runs to complete")
        assert len(target.received) == 4, "the second engine took back live leases"
        assert sorted(p.name for p in (data / "node-slots").iterdir()) == ["0.lock", "1.lock"]
    finally:
        second.kill()
        first.kill()
        target.stop()

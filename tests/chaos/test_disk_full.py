"""SQLite on a full disk: 503 saying so, nothing accepted lost, recovery by itself.

The engine's data dir sits on a small tmpfs (``mount -t tmpfs -o size=…``; skipped
where the test cannot mount). A filler file takes the free space while clients keep
submitting; then the filler is removed. Promises (docs/guarantees.md §7): while
the disk is full ingest answers ``503`` with code ``store_full`` and ``Retry-After``
(never 202, never 500); every task accepted before or after completes; the engine
accepts work again without a restart once space returns; ``PRAGMA integrity_check``
passes.
"""

from __future__ import annotations

import collections
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.engine import EngineProcess
from tests.support.poll import eventually
from tests.support.target import Target

pytestmark = pytest.mark.chaos


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a size-capped tmpfs")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_answers_503_loses_nothing_and_recovers(small_disk: Path) -> None:
    target = Target().start()
    engine = EngineProcess(small_disk / "data").start()
    accepted: list[str] = []
    answers: collections.Counter[str] = collections.Counter()
    try:
        with httpx.Client(base_url=engine.url, timeout=10) as client:
            def submit(i: int) -> httpx.Response:
                response = client.post("/v1/tasks", json={
                    "url": f"{target.url}/ok", "body": {"i": i, "pad": "p" * 2000}})
                if response.status_code == 202:
                    accepted.append(response.json()["id"])
                return response

            for i in range(20):
                assert submit(i).status_code == 202
            stats = os.statvfs(small_disk)
            filler = small_disk / "filler"
            with filler.open("wb") as f:
                f.write(b"\0" * max(0, stats.f_bavail * stats.f_frsize - 150_000))
            full = None
            for i in range(20, 600):
                response = submit(i)
                answers[str(response.status_code)] += 1
                assert response.status_code in (202, 503), response.text
                if response.status_code == 503:
                    full = response
                    if answers["503"] >= 20:
                        break
            assert full is not None, f"the disk never filled up: {answers}"
            body = full.json()
            assert body["code"] == "store_full" and "disk is full" in body["title"], body
            assert full.headers["Retry-After"]
            filler.unlink()  # space returns: no restart
            eventually(lambda: submit(10_000).status_code == 202, timeout=15, interval=0.2,
                       what="the engine to recover when space returned")
            for i in range(5):
                assert submit(20_000 + i).status_code == 202

            def statuses() -> collections.Counter[str]:
                return collections.Counter(client.get(f"/v1/runs/{run_id}").json()["status"]
                                           for run_id in accepted)

            eventually(lambda: statuses() == {"completed": len(accepted)}, timeout=60,
                       interval=0.5, what="every accepted task to complete",
                       detail=statuses)
        print(f"disk full: {len(accepted)} accepted, all completed; answers while filling: "
              f"{dict(answers)}")
    finally:
        engine.kill()
        target.stop()
    with sqlite3.connect(small_disk / "data" / "offload.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

"""`offload serve --workers N`: N engine processes on one port and one PostgreSQL database.

Every task is called exactly once whichever worker accepted it or claimed it; both
workers announce themselves; `kill -9` of the parent takes the workers down with it
(a crash of the whole engine) and a restart finishes what was left; SQLite refuses more
than one worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from offload import Client
from tests.support.engine import EngineProcess, free_port
from tests.support.poll import eventually
from tests.support.target import Target

pytestmark = pytest.mark.postgres
API_KEY = "ofk_admin_workers0123456789abc"


def _engine(tmp_path: Path, url: str, port: int) -> EngineProcess:
    return EngineProcess(tmp_path, database_url=url, mode="serve", port=port,
                         args=["--workers", "2"],
                         env={"OFFLOAD_API_KEYS": API_KEY,
                              "OFFLOAD_OUTBOUND_ALLOW": "127.0.0.1/32"})


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_two_workers_share_the_port_and_run_each_task_once(
        tmp_path: Path, postgres_url: str, target: Target) -> None:
    engine = _engine(tmp_path, postgres_url, free_port()).start(timeout=60)
    try:
        with Client(engine.url, api_key=API_KEY) as client:
            runs = [client.create_task(f"{target.url}/w/{i}", body={"i": i})
                    for i in range(120)]
            runs += client.create_tasks(
                [{"url": f"{target.url}/w/{i}", "body": {"i": i}}
                 for i in range(120, 300)])["data"]
            for run in runs[-20:]:
                assert client.wait_run(run["id"], timeout=60)["status"] == "completed"
            target.wait_for(lambda: len([r for r in target.received
                                         if r.path.startswith("/w/")]) >= 300, timeout=60)
        with psycopg.connect(postgres_url) as conn:
            pids = {row[0] for row in conn.execute("SELECT pid FROM engines")}
        assert len(pids) == 2 and engine.proc is not None and engine.proc.pid not in pids
        # SIGTERM: the parent passes it on and waits for its workers, which stop claiming
        # and let calls in flight finish. Once it has exited nothing more can arrive.
        engine.stop()
        assert engine.proc.poll() is not None and not any(_alive(p) for p in pids)
        calls = Counter(r.path for r in target.received if r.path.startswith("/w/"))
        assert len(calls) == 300 and set(calls.values()) == {1}
    finally:
        engine.stop()


def test_kill_9_of_the_parent_takes_the_workers_down_and_a_restart_finishes(
        tmp_path: Path, postgres_url: str, target: Target) -> None:
    port = free_port()
    engine = _engine(tmp_path, postgres_url, port).start(timeout=60)
    assert engine.proc is not None
    target.script("/slow", (200, {}, b"ok", 1.5))
    with Client(engine.url, api_key=API_KEY, retries=0) as client:
        ids = [client.create_task(f"{target.url}/slow")["id"] for _ in range(6)]
    target.wait_for(lambda: target.at("/slow"), timeout=20)
    workers = _children(engine.proc.pid)
    assert workers
    engine.kill(signal.SIGKILL)
    eventually(lambda: not any(_alive(p) for p in workers), timeout=10, interval=0.1,
               what="the workers to die with their parent")
    restarted = _engine(tmp_path, postgres_url, port).start(timeout=60)
    try:
        with Client(restarted.url, api_key=API_KEY) as client:
            for run_id in ids:
                assert client.wait_run(run_id, timeout=60)["status"] == "completed"
    finally:
        restarted.stop()


def test_sqlite_refuses_more_than_one_worker(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    env["OFFLOAD_API_KEYS"] = API_KEY
    out = subprocess.run([sys.executable, "-m", "offload", "serve", "--workers", "2",
                          "--port", str(free_port()), "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode != 0 and "needs PostgreSQL" in out.stderr

"""`offload serve --workers N`: API front processes beside an executor, on both stores.

Tasks and events accepted by any front are committed before their 202 and every task is
called exactly once, by the executor; `kill -9` of the parent takes every child down (a
crash of the whole engine), `kill -9` of one child stops the others, and either way a
restart finishes every accepted task. On PostgreSQL ``--executors 2`` runs two claimers
(each its own node slot); SQLite refuses more than one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from offload import Client
from tests.support.engine import EngineProcess, free_port
from tests.support.poll import eventually
from tests.support.target import Target

API_KEY = "ofk_admin_workers0123456789abc"


def _engine(tmp_path: Path, url: str, port: int, workers: int = 3,
            executors: int = 1) -> EngineProcess:
    return EngineProcess(tmp_path, database_url=url, mode="serve", port=port,
                         args=["--workers", str(workers), "--executors", str(executors)],
                         env={"OFFLOAD_API_KEYS": API_KEY, "OFFLOAD_EVENT_KEYS": "evk",
                              "OFFLOAD_OUTBOUND_ALLOW": "127.0.0.1/32"})


def _children(pid: int) -> list[int]:
    """The engine's processes (not multiprocessing's resource tracker), oldest first."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return sorted((int(p) for p in out.stdout.split()
                   if "resource_tracker" not in _cmdline(int(p))),
                  key=lambda p: int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[19]))


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _task_urls(target: Target, prefix: str) -> Counter[str]:
    return Counter(r.path for r in target.received if r.path.startswith(prefix))


@pytest.mark.parametrize("executors", [1, 2])
def test_fronts_accept_the_executor_runs_each_task_once(
        tmp_path: Path, store_url: str, target: Target, executors: int) -> None:
    if executors > 1 and store_url.startswith("sqlite"):
        pytest.skip("one executor per SQLite file")
    engine = _engine(tmp_path, store_url, free_port(), workers=2 + executors,
                     executors=executors).start(timeout=60)
    try:
        runs = []
        for i in range(0, 300, 30):  # a new connection each time: spread over the fronts
            with Client(engine.url, api_key=API_KEY) as client:
                runs += [client.create_task(f"{target.url}/w/{n}", body={"n": n})
                         for n in range(i, i + 10)]
                runs += client.create_tasks([{"url": f"{target.url}/w/{n}", "body": {"n": n}}
                                             for n in range(i + 10, i + 30)])["data"]
        events = []
        for i in range(20):
            answer = httpx.post(f"{engine.url}/e/evk", json={"name": "split/e", "data": {"i": i}},
                                headers={"Authorization": f"Bearer {API_KEY}"})
            assert answer.status_code == 200, answer.text
            events += answer.json()["ids"]
        target.wait_for(lambda: len(_task_urls(target, "/w/")) >= 300, timeout=60)
        with Client(engine.url, api_key=API_KEY) as client:
            for run in runs[-20:]:
                assert client.wait_run(run["id"], timeout=60)["status"] == "completed"
            for event_id in events:
                got = httpx.get(f"{engine.url}/v1/events/{event_id}",
                                headers={"Authorization": f"Bearer {API_KEY}"})
                assert got.status_code == 200 and got.json()["data"]["i"] >= 0
        # The executor hears of work a front committed at once, not at its 1 s idle look.
        pickups = []
        with Client(engine.url, api_key=API_KEY) as client:
            for n in range(9):
                sent = time.monotonic()
                client.create_task(f"{target.url}/p/{n}")
                target.wait_for(lambda n=n: target.at(f"/p/{n}"), timeout=10)
                pickups.append(time.monotonic() - sent)
        assert sorted(pickups)[4] < 0.25, pickups
        assert engine.proc is not None
        assert len(_children(engine.proc.pid)) == 2 + executors
    finally:
        engine.stop()
    # Counted once the engine has exited (SIGTERM: calls in flight finish first).
    calls = _task_urls(target, "/w/")
    assert len(calls) == 300 and set(calls.values()) == {1}


def _slow_tasks(engine: EngineProcess, target: Target) -> list[str]:
    target.script("/slow", (200, {}, b"ok", 1.5))
    ids = []
    for _ in range(3):
        with Client(engine.url, api_key=API_KEY, retries=0) as client:
            ids += [client.create_task(f"{target.url}/slow")["id"] for _ in range(3)]
    target.wait_for(lambda: target.at("/slow"), timeout=20)
    return ids


@pytest.mark.parametrize("victim", ["parent", "executor", "front"])
def test_kill_9_loses_no_accepted_task(tmp_path: Path, store_url: str, target: Target,
                                       victim: str) -> None:
    port = free_port()
    engine = _engine(tmp_path, store_url, port).start(timeout=60)
    assert engine.proc is not None
    ids = _slow_tasks(engine, target)
    children = _children(engine.proc.pid)
    assert len(children) == 3
    if victim == "parent":
        engine.kill(signal.SIGKILL)
    else:  # the executor is started first, the API fronts after it
        os.kill(children[0] if victim == "executor" else children[-1], signal.SIGKILL)
        assert engine.proc.wait(timeout=30) != 0  # the parent stops the others and exits
    eventually(lambda: not any(_alive(p) for p in children), timeout=10, interval=0.1,
               what="the children to die")
    restarted = _engine(tmp_path, store_url, port).start(timeout=60)
    try:
        with Client(restarted.url, api_key=API_KEY) as client:
            for run_id in ids:
                assert client.wait_run(run_id, timeout=60)["status"] == "completed"
    finally:
        restarted.stop()


def test_sqlite_refuses_more_than_one_executor(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    env["OFFLOAD_API_KEYS"] = API_KEY
    out = subprocess.run([sys.executable, "-m", "offload", "serve", "--workers", "3",
                          "--executors", "2", "--port", str(free_port()),
                          "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode != 0 and "needs PostgreSQL" in out.stderr


def _samples(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def test_metrics_of_any_front_sum_every_process(tmp_path: Path, store_url: str,
                                                target: Target) -> None:
    engine = _engine(tmp_path, store_url, free_port()).start(timeout=60)
    try:
        with Client(engine.url, api_key=API_KEY) as client:
            ids = [client.create_task(f"{target.url}/m/{n}")["id"] for n in range(12)]
            for run_id in ids:
                assert client.wait_run(run_id, timeout=60)["status"] == "completed"
        for _ in range(8):  # a new connection each time: whichever front accepts it
            answer = httpx.get(f"{engine.url}/metrics",
                               headers={"Authorization": f"Bearer {API_KEY}"})
            assert answer.status_code == 200, answer.text
            text = answer.text
            # Counted by the executor, answered by a front.
            assert _samples(text, "offload_outbound_requests_total", kind="target",
                            outcome="success") == 12, text
            assert _samples(text, "offload_run_ends_total", kind="task",
                            status="completed") == 12, text
            assert _samples(text, "offload_pickup_lag_seconds_count") >= 12, text
            # Read from the store by the answering front once, not summed per process.
            assert _samples(text, "offload_runs", status="completed") == 12, text
            assert _samples(text, "offload_store_up") == 1, text
            assert text.count("\noffload_info{") + text.startswith("offload_info{") == 1
    finally:
        engine.stop()


def test_wait_on_a_front_answers_when_the_executor_ends_the_run(
        tmp_path: Path, store_url: str, target: Target) -> None:
    from datetime import datetime

    engine = _engine(tmp_path, store_url, free_port()).start(timeout=60)
    target.script("/late", *[(200, {}, b"ok", 0.3)] * 20)
    try:
        lags = []
        for _ in range(7):
            with Client(engine.url, api_key=API_KEY) as client:
                run_id = client.create_task(f"{target.url}/late")["id"]
            # A new connection: a front (the executor serves no HTTP), waiting before the
            # run ends (the target answers after 0.3 s).
            answer = httpx.get(f"{engine.url}/v1/runs/{run_id}/wait",
                               params={"timeout": 30}, timeout=40,
                               headers={"Authorization": f"Bearer {API_KEY}"})
            returned = time.time()
            body = answer.json()
            assert body["status"] == "completed", body
            ended = datetime.fromisoformat(body["ended_at"].replace("Z", "+00:00"))
            lags.append(returned - ended.timestamp())
        lags.sort()
        # Without the run-end datagram a front notices at its 0.5 s poll (median ~0.25 s).
        assert lags[3] < 0.1 and lags[-2] < 0.2, lags
    finally:
        engine.stop()

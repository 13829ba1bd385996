"""Three engines on one PostgreSQL database under load, killed and cut off repeatedly.

Scenario (issue 11, research §B.6 F1/F4/F7): three ``offload`` processes share one
database through a TCP proxy. Clients keep submitting HTTP tasks and events that
start durable functions (official Python SDK: steps around a sleep and a
wait-for-event; a concurrency-limited function; five cron functions). Meanwhile a
random engine is killed with SIGKILL and restarted every few seconds, and the
database is cut off (every connection dropped, new ones refused) and restored.

Promises checked (docs/guarantees.md):

* every ``202`` completes (HTTP tasks and the runs of every accepted event);
* no step result is recorded twice (one record per step id per run);
* one run per cron tick;
* the concurrency limit is never exceeded (measured inside the app);
* duplicate deliveries (at-least-once: work in flight at a kill runs again) are
  counted and bounded.

CI runs a short budget (2 kills, 1 outage); ``OFFLOAD_CHAOS_FULL=1`` runs the full
length (20 kills, 2 outages). The figures are printed and, with ``OFFLOAD_CHAOS_REPORT=<file>``,
written as JSON.
"""

from __future__ import annotations

import collections
import json
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

from tests.conftest import postgres_schema
from tests.support.engine import EngineProcess, free_port
from tests.support.poll import answers, eventually
from tests.support.proxy import ChaosProxy
from tests.support.target import Target

FULL = os.environ.get("OFFLOAD_CHAOS_FULL") == "1"
pytestmark = [pytest.mark.chaos, pytest.mark.postgres,
              pytest.mark.timeout(1800 if FULL else 420)]
KILLS = 20 if FULL else 2
OUTAGES = 2 if FULL else 1
PAUSE_S = 3.0 if FULL else 1.5
"""Time between one chaos action (kill and restart, or outage) and the next."""
OUTAGE_S = 5.0
SETTLE_S = 240.0 if FULL else 150.0
"""How long everything accepted has to complete once the chaos stops."""
APP = Path(__file__).parent / "apps" / "chaos_app.py"


@dataclass
class Load:
    """What the clients got accepted (202) and what they could not get answered."""

    tasks: set[str] = field(default_factory=set)
    flows: dict[str, str] = field(default_factory=dict)  # event id -> k
    limited: set[str] = field(default_factory=set)
    refused: collections.Counter[str] = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Cluster:
    """Three engines; ``up`` are the ones answering right now."""

    def __init__(self, engines: list[EngineProcess]) -> None:
        self.engines = engines
        self.up = set(range(len(engines)))
        self.lock = threading.Lock()

    def any_url(self) -> str:
        with self.lock:
            i = random.choice(sorted(self.up))
        return self.engines[i].url

    def kill_and_restart(self, i: int) -> None:
        with self.lock:
            self.up.discard(i)
        self.engines[i].kill()
        self.engines[i].start(timeout=60)
        with self.lock:
            self.up.add(i)


def _load(cluster: Cluster, load: Load, target: Target, stop: threading.Event) -> None:
    n = 0
    pending_go: list[tuple[float, str]] = []
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            n += 1
            url = cluster.any_url()
            try:
                r = client.post(f"{url}/v1/tasks/batch", json={"tasks": [
                    {"url": f"{target.url}/ok", "queue": "chaos", "retries": 30, "timeout": 10}
                    for _ in range(4)]})
                if r.status_code == 202:
                    with load.lock:
                        load.tasks |= {d["id"] for d in r.json()["data"]}
                else:
                    load.refused[f"tasks {r.status_code}"] += 1
                k = f"k{n}"
                r = client.post(f"{url}/v1/events", json=[
                    {"name": "chaos/flow", "data": {"k": k}},
                    *[{"name": "chaos/limited", "data": {"n": n, "i": i}} for i in range(2)]])
                if r.status_code == 202:
                    flow_id, *limited_ids = r.json()["ids"]
                    with load.lock:
                        load.flows[flow_id] = k
                        load.limited.update(limited_ids)
                    pending_go.append((time.monotonic() + 2.0, k))
                else:
                    load.refused[f"events {r.status_code}"] += 1
                due = [k for at, k in pending_go if at <= time.monotonic()]
                pending_go = [(at, k) for at, k in pending_go if at > time.monotonic()]
                if due:
                    client.post(f"{url}/v1/events", json=[
                        {"name": "chaos/go", "data": {"k": k}} for k in due])
            except httpx.HTTPError as exc:
                load.refused[type(exc).__name__] += 1
            time.sleep(0.25)


def _all_runs(url: str, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = httpx.get(f"{url}/v1/runs", params={**params, "limit": 500,
                                                     **({"cursor": cursor} if cursor else {})},
                         timeout=30).json()
        out += page["data"]
        cursor = page["next_cursor"]
        if not cursor:
            return out


def test_three_engines_survive_kills_and_outages(tmp_path: Path) -> None:
    random.seed(int(os.environ.get("OFFLOAD_CHAOS_SEED", "11")))
    with postgres_schema() as direct_url:
        parts = urlsplit(direct_url)
        proxy = ChaosProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
        proxied = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
        target = Target().start()
        target.script("/ok", (200, {}, b"ok", 0.05))
        engines = [EngineProcess(tmp_path / f"engine{i}", database_url=proxied,
                                 env={"OFFLOAD_CALL_TIMEOUT_S": "10"}) for i in range(3)]
        cluster = Cluster(engines)
        app_port = free_port()
        app_log = (tmp_path / "app.log").open("ab")
        app = None
        stop = threading.Event()
        load = Load()
        figures: dict[str, Any] = {"full": FULL}
        try:
            for engine in engines:
                engine.start(timeout=60)
            app_env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
            app_env["INNGEST_DEV"] = engines[0].url
            app = subprocess.Popen([sys.executable, str(APP), "--port", str(app_port)],
                                   env=app_env, stdout=app_log, stderr=subprocess.STDOUT)
            eventually(lambda: answers(f"http://127.0.0.1:{app_port}/counts"), timeout=30,
                       interval=0.1, what="the chaos app to come up")
            synced = httpx.post(f"{engines[0].url}/v1/apps", timeout=30,
                                json={"url": f"http://127.0.0.1:{app_port}/api/inngest"})
            assert synced.status_code == 200, synced.text
            loader = threading.Thread(target=_load, args=(cluster, load, target, stop),
                                      daemon=True)
            loader.start()
            began = time.monotonic()
            actions = ["kill"] * KILLS + ["outage"] * OUTAGES
            random.shuffle(actions)
            kills = outages = 0
            for action in actions:
                time.sleep(PAUSE_S)
                if action == "kill":
                    cluster.kill_and_restart(random.randrange(len(engines)))
                    kills += 1
                else:
                    proxy.cut()
                    time.sleep(OUTAGE_S)
                    proxy.restore()
                    outages += 1
            time.sleep(PAUSE_S)
            stop.set()
            loader.join(30)
            figures.update(kills=kills, outages=outages,
                           chaos_seconds=round(time.monotonic() - began, 1))
            url = engines[0].url

            # every 202 completes
            seen: dict[str, Any] = {}

            def settled() -> bool:
                tasks = {r["id"]: r for r in _all_runs(url, queue="chaos")}
                missing = load.tasks - tasks.keys()
                assert not missing, f"{len(missing)} accepted tasks are gone"
                seen["tasks"] = [i for i in load.tasks if tasks[i]["status"] != "completed"]
                seen["runs"] = {e: httpx.get(f"{url}/v1/events/{e}", timeout=30).json()["runs"]
                                for e in [*load.flows, *load.limited]}
                seen["events"] = [e for e, runs in seen["runs"].items()
                                  if len(runs) != 1 or runs[0]["status"] != "completed"]
                return not seen["tasks"] and not seen["events"]

            eventually(settled, timeout=SETTLE_S, interval=1.0,
                       what="everything accepted to complete after the chaos",
                       detail=lambda: (
                           f"{len(seen['tasks'])} tasks, {len(seen['events'])} events open, "
                           f"e.g. {[seen['runs'][e] for e in seen['events'][:2]]}\n"
                           f"{engines[0].logs()}"))
            figures.update(tasks=len(load.tasks), flows=len(load.flows),
                           limited=len(load.limited), refused=dict(load.refused), lost=0)

            # no step result recorded twice
            for e in load.flows:
                run = httpx.get(f"{url}/v1/runs/{seen['runs'][e][0]['id']}", timeout=30).json()
                step_ids = [s["id"] for s in run["steps"]]
                assert len(step_ids) == len(set(step_ids)), run["steps"]
                assert {"a", "b"} <= {s["name"] for s in run["steps"]}, run["steps"]

            # duplicates: counted and bounded
            deliveries = collections.Counter(r.headers.get("webhook-id")
                                             for r in target.at("/ok"))
            task_repeats = sum(c - 1 for c in deliveries.values())
            counts = httpx.get(f"http://127.0.0.1:{app_port}/counts", timeout=10).json()
            step_repeats = sum(c - 1 for c in counts.values())
            overlap = httpx.get(f"http://127.0.0.1:{app_port}/overlap", timeout=10).json()
            figures.update(task_deliveries=sum(deliveries.values()),
                           task_repeats=task_repeats, step_executions=sum(counts.values()),
                           step_repeats=step_repeats, max_concurrent=overlap["max"])
            assert len(deliveries) == len(load.tasks)
            bound = 100 * (kills + outages)
            assert task_repeats + step_repeats <= bound, figures

            # the concurrency limit held
            assert overlap["max"] <= 2, figures

            # one run per cron tick
            with psycopg.connect(direct_url, autocommit=True) as conn:
                ticks = conn.execute(
                    "SELECT function_id, COUNT(*), COUNT(DISTINCT tick_at) FROM cron_ticks "
                    "GROUP BY function_id").fetchall()
                cron_runs = dict(conn.execute(
                    "SELECT function_id, COUNT(*) FROM runs WHERE function_id IN "
                    "(SELECT function_id FROM cron_ticks) GROUP BY function_id").fetchall())
            for function_id, n, distinct in ticks:
                assert n == distinct == cron_runs.get(function_id), (function_id, n,
                                                                     cron_runs)
            figures["cron_ticks"] = sum(n for _, n, _ in ticks)
            print("chaos figures:", json.dumps(figures))
            report = os.environ.get("OFFLOAD_CHAOS_REPORT")
            if report:
                Path(report).write_text(json.dumps(figures, indent=2) + "\n")
        finally:
            stop.set()
            if app is not None:
                app.kill()
                app.wait()
            for engine in engines:
                engine.kill()
            target.stop()
            proxy.stop()

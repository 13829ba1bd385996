"""The operator CLI through the real console script (``.venv/bin/offload``) against real
engines: tasks, events, runs (show, tail, name filter), apps sync, ``dev -u`` re-syncing a
restarted Inngest SDK app, and one-line errors (never a traceback) when the engine is
unreachable or the key is wrong.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import postgres_schema
from tests.support.engine import EngineProcess, free_port
from tests.support.poll import answers, eventually
from tests.support.target import Target

OFFLOAD = str(Path(sys.executable).parent / "offload")
APP_SCRIPT = Path(__file__).parent / "apps" / "py_app.py"
API_KEY = "ofk_admin_cli-ops-test-key-0123456789"


def offload(*args: str, url: str, key: str | None = None, timeout: float = 60,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the console script with OFFLOAD_URL (and OFFLOAD_API_KEY) set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    env.update(OFFLOAD_URL=url, COLUMNS="200", NO_COLOR="1")
    if key is not None:
        env["OFFLOAD_API_KEY"] = key
    return subprocess.run([OFFLOAD, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, input=stdin)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(postgres_schema()) \
            if request.param == "postgres" else None
        e = EngineProcess(tmp_path_factory.mktemp(f"cli-{request.param}"),
                          database_url=database_url).start()
        stack.callback(e.kill)
        yield e


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    t = Target().start()
    t.script("/boom", (400, {"content-type": "application/json"}, b'{"error": "nope"}', 0))
    yield t
    t.stop()


def test_tasks_create__wait_prints_the_outcome(engine: EngineProcess, target: Target) -> None:
    done = offload("tasks", "create", f"{target.url}/hello", "--body", '{"n": 1}',
                   "--name", "greeting", "--wait", url=engine.url)
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stdout and "greeting (POST 127.0.0.1" in done.stdout
    assert json.loads(target.at("/hello")[0].body) == {"n": 1}

    failed = offload("tasks", "create", f"{target.url}/boom", "--retries", "0", "--wait",
                     "--json", url=engine.url)
    assert failed.returncode == 1
    run = json.loads(failed.stdout)
    assert run["status"] == "failed" and "400" in run["error"]["message"]


def test_tasks_create__without_wait_and_bad_input(engine: EngineProcess,
                                                  target: Target) -> None:
    queued = offload("tasks", "create", f"{target.url}/later", "--delay", "3600", "--json",
                     url=engine.url)
    assert queued.returncode == 0, queued.stderr
    assert json.loads(queued.stdout)["status"] == "queued"

    bad = offload("tasks", "create", "ftp://example.com/x", url=engine.url)
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and "body.url" in bad.stderr
    assert "Traceback" not in bad.stderr

    not_json = offload("tasks", "create", f"{target.url}/x", "--body", "{oops", url=engine.url)
    assert not_json.returncode == 2 and "--body" in not_json.stderr


def test_runs__name_filter_show_as_a_tree(engine: EngineProcess, target: Target) -> None:
    named = offload("tasks", "create", f"{target.url}/named", "--name", "nightly-report",
                    "--wait", "--json", url=engine.url)
    run_id = json.loads(named.stdout)["id"]
    offload("tasks", "create", f"{target.url}/other", "--name", "other", "--wait",
            url=engine.url)

    listed = offload("runs", "--name", "nightly-report", "--json", url=engine.url)
    assert [r["id"] for r in json.loads(listed.stdout)["data"]] == [run_id]
    table = offload("runs", "--name", "nightly-report", url=engine.url)
    assert run_id in table.stdout and "nightly-report" in table.stdout

    shown = offload("runs", "show", run_id, url=engine.url)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert run_id in lines[0] and "completed" in lines[0]
    step_lines = [line for line in lines if "request" in line]
    assert step_lines and step_lines[0].lstrip().startswith(("├", "└"))  # a tree branch

    missing = offload("runs", "show", "01NOSUCHRUN0000000000000000", url=engine.url)
    assert missing.returncode == 1 and "HTTP 404" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_events_send__starts_nothing_but_is_listed(engine: EngineProcess) -> None:
    sent = offload("events", "send", "cli/hello", "--data", '{"who": "cli"}', url=engine.url)
    assert sent.returncode == 0, sent.stderr
    event_id = sent.stdout.strip()
    body = httpx.get(f"{engine.url}/v1/events/{event_id}").json()
    assert body["name"] == "cli/hello" and body["data"] == {"who": "cli"}

    from_stdin = offload("events", "send", "cli/stdin", "--data", "-", "--json",
                         url=engine.url, stdin='{"n": 2}')
    assert len(json.loads(from_stdin.stdout)["ids"]) == 1

    bad = offload("events", "send", "cli/list", "--data", "[1]", url=engine.url)
    assert bad.returncode == 1 and "data" in bad.stderr and "Traceback" not in bad.stderr


def test_runs_tail__follows_new_runs(engine: EngineProcess, target: Target) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    env.update(OFFLOAD_URL=engine.url, COLUMNS="200", NO_COLOR="1")
    tail = subprocess.Popen([OFFLOAD, "runs", "tail", "--json", "--interval", "0.3"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    printed: list[dict[str, Any]] = []

    def read() -> None:
        assert tail.stdout is not None
        for line in tail.stdout:
            printed.append(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    api = httpx.Client(base_url=engine.url, timeout=30)
    markers: list[str] = []

    def marker_printed() -> bool:
        """The first poll only learns what exists (prints nothing); a run created after
        it is printed by the next one. Create marker runs (an hour away, cancelled
        below) until one is printed: from then on tail is following."""
        if any(run["id"] in markers for run in printed):
            return True
        markers.append(api.post("/v1/tasks", json={"url": f"{target.url}/marker",
                                                   "delay": 3600}).json()["id"])
        return False

    try:
        eventually(marker_printed, timeout=30, interval=0.3, what="tail to print a new run",
                   detail=lambda: tail.stderr.read() if tail.poll() is not None and
                   tail.stderr else printed)
        created = offload("tasks", "create", f"{target.url}/tailed", "--json", url=engine.url)
        run_id = json.loads(created.stdout)["id"]
        seen = eventually(lambda: [r for r in printed if r["id"] == run_id and
                                   r["status"] == "completed"] and
                          [r for r in printed if r["id"] == run_id],
                          timeout=30, what=f"tail to print run {run_id} completed",
                          detail=lambda: [r for r in printed if r["id"] == run_id])
        assert seen[-1]["status"] == "completed", seen
    finally:
        for marker in markers:
            api.post(f"/v1/runs/{marker}/cancel")
        api.close()
        tail.send_signal(signal.SIGINT)
        tail.wait(timeout=10)
        reader.join(10)
    assert tail.returncode in (0, 1, -signal.SIGINT)
    assert "Traceback" not in (tail.stderr.read() if tail.stderr else "")


# -- errors: one line, non-zero exit -------------------------------------------------------------

@pytest.mark.parametrize("argv", [["runs"], ["runs", "show", "x"], ["tasks", "create",
                                  "http://example.com/"], ["events", "send", "e"],
                                  ["apps", "sync", "http://127.0.0.1:1/api/inngest"],
                                  ["cancel", "x"], ["replay", "--status", "failed"]])
def test_unreachable_engine__one_line_no_traceback(argv: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = offload(*argv, url=url, timeout=30)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "httpx" not in done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert f"cannot reach the offload engine at {url}" in done.stderr


def test_wrong_key__one_line(tmp_path: Path) -> None:
    with EngineProcess(tmp_path, mode="serve", env={"OFFLOAD_API_KEYS": API_KEY}) as served:
        wrong = offload("runs", url=served.url, key="ofk_admin_wrong-key-000000000000000000")
        assert wrong.returncode == 1
        assert "refused the API key (HTTP 401)" in wrong.stderr
        assert wrong.stderr.strip().count("\n") == 0 and "Traceback" not in wrong.stderr
        none = offload("runs", url=served.url)
        assert none.returncode == 1 and "HTTP 401" in none.stderr
        good = offload("runs", "--json", url=served.url, key=API_KEY)
        assert good.returncode == 0, good.stderr
        assert json.loads(good.stdout)["data"] == []


# -- apps: sync, and dev -u re-syncing a restarted app ------------------------------------------

def _start_app(port: int, engine_url: str, log: Path,
               app_id: str = "pyapp") -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
    env.update(INNGEST_DEV=engine_url, APP_ID=app_id)
    handle = log.open("ab")
    proc = subprocess.Popen([sys.executable, str(APP_SCRIPT), "--framework", "fastapi",
                             "--port", str(port)], env=env, stdout=handle,
                            stderr=subprocess.STDOUT)
    try:
        eventually(lambda: answers(f"http://127.0.0.1:{port}/counts"), timeout=30,
                   interval=0.1, what=f"the app {app_id} to start",
                   detail=lambda: "\n" + log.read_text())
    except AssertionError:
        proc.kill()
        raise
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(timeout=10)


def test_apps_sync(engine: EngineProcess, tmp_path: Path) -> None:
    port = free_port()
    app = _start_app(port, engine.url, tmp_path / "app.log")
    try:
        synced = offload("apps", "sync", f"http://127.0.0.1:{port}/api/inngest", url=engine.url)
        assert synced.returncode == 0, synced.stderr
        assert synced.stdout.startswith("synced pyapp:") and "pyapp-two-steps" in synced.stdout
        listed = offload("apps", "list", "--json", url=engine.url)
        assert any(a["id"] == "pyapp" for a in json.loads(listed.stdout)["data"])

        # A step that fails once then succeeds: both attempts under the step in the tree.
        event = json.loads(offload("events", "send", "t/flaky", "--json",
                                   url=engine.url).stdout)["ids"][0]
        runs = eventually(lambda: httpx.get(f"{engine.url}/v1/events/{event}").json()["runs"],
                          timeout=30, interval=0.2, what=f"a run of event {event}")
        run_id = runs[0]["id"]
        httpx.get(f"{engine.url}/v1/runs/{run_id}/wait", params={"timeout": 30}, timeout=40)
        tree = offload("runs", "show", run_id, url=engine.url).stdout
        lines = tree.splitlines()
        step = next(i for i, line in enumerate(lines) if "maybe" in line)
        assert "2 attempt(s)" in lines[step]
        assert "attempt 1: errored" in lines[step + 1]
        assert "ValueError: transient" in lines[step + 1]
        assert "attempt 2: completed" in lines[step + 2]
    finally:
        _stop(app)
    down = offload("apps", "sync", f"http://127.0.0.1:{port}/api/inngest", url=engine.url)
    assert down.returncode == 1 and "Traceback" not in down.stderr
    assert down.stderr.strip().count("\n") == 0


def _synced_at(engine_url: str, app_id: str = "pyapp") -> str | None:
    for app in httpx.get(f"{engine_url}/v1/apps", timeout=5).json()["data"]:
        if app["id"] == app_id and app["synced_at"]:
            return str(app["synced_at"])
    return None


def test_dev_u__syncs_at_start_and_after_each_app_restart(tmp_path: Path) -> None:
    app_port, late_port = free_port(), free_port()
    app_url = f"http://127.0.0.1:{app_port}/api/inngest"
    late_url = f"http://127.0.0.1:{late_port}/api/inngest"
    dev = EngineProcess(tmp_path / "dev", args=["-u", app_url, "-u", app_url, "-u", late_url])
    app = _start_app(app_port, dev.url, tmp_path / "app.log")  # the app is up first
    late: subprocess.Popen[bytes] | None = None
    try:
        dev.start()
        first = eventually(lambda: _synced_at(dev.url), timeout=30, interval=0.2,
                           what="dev -u to sync pyapp")
        # An app that was down when the engine started is synced once it comes up.
        late = _start_app(late_port, dev.url, tmp_path / "late.log", app_id="lateapp")
        eventually(lambda: _synced_at(dev.url, "lateapp"), timeout=30, interval=0.2,
                   what="dev -u to sync lateapp once it is up")
        r = httpx.post(f"{dev.url}/v1/events", json={"name": "t/two", "data": {"value": 1}})
        assert r.status_code == 202

        _stop(app)  # a restart: down, then up again
        # the app was up from the start, so this line can only come from the restart
        eventually(lambda: f"app {app_url} is not reachable" in dev.logs(), timeout=30,
                   interval=0.2, what="dev -u to find pyapp down", detail=dev.logs)
        app = _start_app(app_port, dev.url, tmp_path / "app.log")
        second = eventually(
            lambda: (_synced_at(dev.url) or "") > first and _synced_at(dev.url),
            timeout=30, interval=0.2, what="dev -u to re-sync the restarted pyapp")
        assert second > first
        assert "synced app pyapp" in dev.logs() and "not reachable" in dev.logs()

        # functions run after the re-sync, against the restarted app
        event = httpx.post(f"{dev.url}/v1/events",
                           json={"name": "t/two", "data": {"value": 7}}).json()["ids"][0]
        runs = eventually(lambda: httpx.get(f"{dev.url}/v1/events/{event}").json()["runs"],
                          timeout=30, interval=0.2, what=f"a run of event {event}")
        done = httpx.get(f"{dev.url}/v1/runs/{runs[0]['id']}/wait",
                         params={"timeout": 30}, timeout=40).json()
        assert done["status"] == "completed" and done["output"]["b"] == {"got": 7}
    finally:
        _stop(app)
        if late is not None:
            _stop(late)
        dev.kill()


def test_replay_by_filter__skips_runs_already_replayed(engine: EngineProcess,
                                                       target: Target) -> None:
    queue = f"q{time.monotonic_ns() % 10**9}"
    target.script(f"/{queue}", (500, {}, b"down", 0.0), (200, {}, b"up", 0.0))
    failed = offload("tasks", "create", f"{target.url}/{queue}", "--retries", "0", "--queue",
                     queue, "--wait", "--json", url=engine.url)
    assert json.loads(failed.stdout)["status"] == "failed"

    first = offload("replay", "--status", "failed", "--queue", queue, url=engine.url)
    assert first.returncode == 0, first.stderr
    assert "completed: 1 of 1 runs replayed" in first.stdout
    again = offload("replay", "--status", "failed", "--queue", queue, url=engine.url)
    assert "completed: 0 of 0 runs replayed" in again.stdout  # the failure was dealt with
    listed = httpx.get(f"{engine.url}/v1/runs", params={"status": "failed", "queue": queue,
                                                         "exclude_replayed": "true"}).json()
    assert listed["data"] == []
    forced = offload("replay", "--status", "failed", "--queue", queue, "--include-replayed",
                     url=engine.url)
    assert "completed: 1 of 1 runs replayed" in forced.stdout


def test_engines__lists_this_engine_alive(engine: EngineProcess) -> None:
    assert engine.proc is not None
    listed = offload("engines", "--json", url=engine.url)
    assert listed.returncode == 0, listed.stderr
    rows = [e for e in json.loads(listed.stdout)["data"] if e["pid"] == engine.proc.pid]
    assert len(rows) == 1 and rows[0]["alive"] is True and rows[0]["version"]
    table = offload("engines", url=engine.url)
    assert str(engine.proc.pid) in table.stdout and "alive" in table.stdout

"""SDK conformance, TypeScript: each behaviour of the official ``inngest`` 4.24.0 npm SDK on
Inngest, stated as one scenario (one function of tests/integration/node_app/conformance.mjs)
and checked on offload, in dev mode on SQLite and in signed mode on PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conformance import SETUPS, Stack, end_invoked_child, stack

pytestmark = [pytest.mark.node, pytest.mark.slow]

APP_DIR = Path(__file__).parent / "node_app"
FN = "conf-node-"


@pytest.fixture(scope="module", params=SETUPS, ids=["-".join(s) for s in SETUPS])
def conf(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Stack]:
    problem = None
    if shutil.which("node") is None:
        problem = "node is not installed"
    elif not (APP_DIR / "node_modules" / "inngest").exists():
        problem = "npm packages missing: run npm ci in tests/integration/node_app"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(f"SKIPPING NODE SDK TESTS — {problem}")
    mode, store = request.param
    with stack(mode, store, tmp_path_factory.mktemp(f"conf-node-{mode}-{store}"),
               ["node", "conformance.mjs"], APP_DIR, "/seen") as s:
        yield s


def seen(s: Stack, run_id: str, what: str) -> list[Any]:
    body: dict[str, list[Any]] = httpx.get(f"{s.app_url}/seen").json()
    return body.get(f"{run_id}/{what}", [])


def step(run: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in run["steps"] if s["name"] == name)
    return found


def used_api(s: Stack, run_id: str) -> bool:
    """Whether the engine sent a call of ``run_id`` with ``use_api`` (its log says so)."""
    return any("use_api" in line and run_id in line
               for line in s.engine.log_path.read_text(errors="replace").splitlines())


# -- parallel groups -------------------------------------------------------------------


def test_parallel_group_with_invoke_sleep_and_wait_completes(conf: Stack) -> None:
    run = conf.run("conf/parallel-mixed")
    assert run["status"] == "completed", run
    assert run["output"] == {"group": ["a", {"n2": 8}, "b", None, None], "tail": "tail"}
    kinds = {s["name"]: s["kind"] for s in run["steps"]}
    assert kinds == {"quick-a": "run", "quick-b": "run", "call-child": "invoke",
                     "nap": "sleep", "hold": "wait_for_event", "after": "run"}


# -- errors, kept whole ----------------------------------------------------------------


def test_step_error_keeps_every_field_and_cause(conf: Stack) -> None:
    run = conf.run("conf/step-error")
    assert run["status"] == "failed"
    broken = step(run, "broken")["error"]
    assert (broken["name"], broken["message"]) == ("Error", "step broke")
    assert broken["stack"] and broken["code"] == "E_BROKEN"  # the SDK sends code and cause
    assert broken["cause"]["name"] == "TypeError" and broken["cause"]["message"] == "deeper"
    assert run["error"]["message"] == "step broke" and run["error"]["stack"]


def test_nested_cause_reaches_the_handler(conf: Stack) -> None:
    run = conf.run("conf/cause-chain")
    assert run["status"] == "completed", run
    assert run["output"] == ["outer", "middle", "inner"]


def test_on_failure_receives_the_whole_error(conf: Stack) -> None:
    run = conf.run("conf/doomed")
    assert run["status"] == "failed"
    assert run["error"]["name"] == "NonRetriableError" and run["error"]["message"] == "no way"
    assert run["error"]["cause"]["message"] == "because"
    handler = conf.ended_run_of(FN + "doomed-failure")
    assert handler["status"] == "completed", handler
    deadline = time.monotonic() + 10
    while not (got := seen(conf, run["id"], "on_failure")):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert got[0]["error"] == run["error"]  # unchanged, every field
    assert got[0]["function_id"] == FN + "doomed" and got[0]["run_id"] == run["id"]


def test_invoke_parent_gets_the_childs_whole_error(conf: Stack) -> None:
    run = conf.run("conf/invoke-fails")
    assert run["status"] == "completed", run
    assert run["output"] == {"name": "NonRetriableError", "message": "child refused",
                             "cause": {"name": "Error", "message": "root cause"}}
    assert step(run, "call-child")["error"]["cause"]["message"] == "root cause"


def test_invoking_a_function_that_is_not_synced_fails_the_step(conf: Stack) -> None:
    run = conf.run("conf/invoke-missing")
    assert run["status"] == "completed", run
    assert run["output"] == {
        "name": "Error", "message": "could not find function with ID: no-such-app-missing"}


# -- attempts and their history --------------------------------------------------------


def test_attempts_and_history(conf: Stack) -> None:
    run = conf.run("conf/retry-history")
    assert run["status"] == "completed", run
    assert run["output"] == {"first": "ok", "then": 1}
    assert seen(conf, run["id"], "attempt") == [0, 1, 2]  # ctx.attempt: the step's own
    assert seen(conf, run["id"], "then-attempt") == [0]
    history = step(run, "maybe")["history"]
    assert [h["attempt"] for h in history] == [1, 2, 3]
    assert [h["status"] for h in history] == ["errored", "errored", "completed"]
    assert [(h["error"] or {}).get("message") for h in history] == [
        "transient 1", "transient 2", None]
    assert run["attempt"] == 3


# -- triggers and events ---------------------------------------------------------------


def test_wildcard_trigger_matches(conf: Stack) -> None:
    assert conf.run("confwild/anything.at-all")["output"] == "confwild/anything.at-all"


def test_event_version_from_the_sdk_is_kept(conf: Stack) -> None:
    sent = httpx.get(f"{conf.app_url}/send-versioned", timeout=30).json()
    event_id = sent["ids"][0]
    body = conf.api("GET", f"/v1/events/{event_id}").json()
    assert body["v"] == "2024-01-01.1"
    runs = conf.runs_of_event(event_id)
    assert conf.finish(runs[0]["id"])["output"] == {"v": "2024-01-01.1"}


def test_send_event_step_shows_as_send_event(conf: Stack) -> None:
    run = conf.run("conf/sender")
    assert run["output"] == {"sent": 1}
    assert step(run, "send")["kind"] == "send_event"


def test_concurrency_key_shows_as_the_runs_queue(conf: Stack) -> None:
    run = conf.run("conf/keyed", {"user": "bob"})
    assert run["queue"] == "bob"
    listed = next(r for r in conf.runs_of(FN + "keyed") if r["id"] == run["id"])
    assert listed["queue"] == "bob"


# -- large data: use_api ---------------------------------------------------------------


def test_large_step_outputs_go_through_the_api(conf: Stack) -> None:
    run = conf.run("conf/big-steps")
    assert run["status"] == "completed", run
    assert run["output"] == {"sizes": [1_500_000] * 3, "tail": "small"}
    assert used_api(conf, run["id"])


def test_batch_too_large_to_send_inline(conf: Stack) -> None:
    blob = "x" * 500_000
    ids = [conf.send("conf/batch", {"i": i, "blob": blob}) for i in range(10)]
    runs = conf.runs_of_event(ids[-1], timeout=30)
    assert runs, "the batch started no run"
    run = conf.finish(runs[0]["id"])
    assert run["status"] == "completed", run
    assert run["output"]["events"] == 10 and run["output"]["chars"] > 5_000_000
    assert used_api(conf, run["id"])


# -- invoke: the child ended every way -------------------------------------------------


@pytest.mark.parametrize("how", ["api", "bulk", "cancel_on", "timeout"])
def test_parent_wakes_whatever_ends_its_child(conf: Stack, how: str) -> None:
    """Inngest resumes a parent awaiting step.invoke once, with the child's error, however
    the child ended; a parent must never hang on a cancelled or timed-out child."""
    run = end_invoked_child(conf, FN, how, f"{how}-{time.monotonic_ns()}")
    assert run["status"] == "completed", run
    expected = "FinishTimeoutError" if how == "timeout" else "FunctionCancelledError"
    assert run["output"]["name"] == expected, run["output"]
    assert run["output"]["message"]
    call = step(run, "call-child")
    assert call["status"] == "failed" and len(call["history"]) == 1

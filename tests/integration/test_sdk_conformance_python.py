"""SDK conformance, Python: each behaviour of the official ``inngest`` 0.5.19 SDK on Inngest,
stated as one scenario (one function of tests/integration/apps/conformance_app.py) and
checked on offload, in dev mode on SQLite and in signed mode on PostgreSQL.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conformance import SETUPS, Stack, end_invoked_child, stack

pytestmark = [pytest.mark.slow]

APP = Path(__file__).parent / "apps" / "conformance_app.py"
FN = "conf-py-"


@pytest.fixture(scope="module", params=SETUPS, ids=["-".join(s) for s in SETUPS])
def conf(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Stack]:
    mode, store = request.param
    with stack(mode, store, tmp_path_factory.mktemp(f"conf-py-{mode}-{store}"),
               [sys.executable, str(APP)], None, "/seen") as s:
        yield s


def seen(s: Stack, run_id: str, what: str) -> list[Any]:
    body: dict[str, list[Any]] = httpx.get(f"{s.app_url}/seen").json()
    return body.get(f"{run_id}/{what}", [])


def step(run: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in run["steps"] if s["name"] == name)
    return found


# -- parallel groups -------------------------------------------------------------------


def test_parallel_group_with_invoke_sleep_and_wait_completes(conf: Stack) -> None:
    """Inngest: a group of step.run + invoke + sleep + wait_for_event ends with every
    result, however the quick steps and the slow ones interleave."""
    run = conf.run("conf/parallel-mixed")
    assert run["status"] == "completed", run
    assert run["output"] == {"group": ["a", {"n2": 8}, "b", None, None], "tail": "tail"}
    kinds = {s["name"]: s["kind"] for s in run["steps"]}
    assert kinds == {"quick-a": "run", "quick-b": "run", "call-child": "invoke",
                     "nap": "sleep", "hold": "wait_for_event", "after": "run"}


# -- errors, kept whole ----------------------------------------------------------------


def test_step_error_keeps_name_message_stack_and_code(conf: Stack) -> None:
    run = conf.run("conf/step-error")
    assert run["status"] == "failed"
    broken = step(run, "broken")["error"]
    assert (broken["name"], broken["message"], broken["code"]) == (
        "ValueError", "step broke", "unknown")
    assert "Traceback" in broken["stack"]
    # the function re-raised the StepError: Python's code for that is step_errored
    assert run["error"]["code"] == "step_errored"
    assert run["error"]["message"] == "step broke" and run["error"]["stack"]


def test_on_failure_receives_the_whole_error(conf: Stack) -> None:
    run = conf.run("conf/doomed")
    assert run["status"] == "failed"
    assert run["error"]["code"] == "non_retriable_error"
    assert run["error"]["name"] == "NonRetriableError"
    handler = conf.ended_run_of(FN + "doomed-failure")
    assert handler["status"] == "completed", handler
    deadline = time.monotonic() + 10
    while not (got := seen(conf, run["id"], "on_failure")):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    data = got[0]
    assert data["error"] == run["error"]  # unchanged, every field
    assert data["function_id"] == FN + "doomed" and data["run_id"] == run["id"]


def test_invoke_parent_gets_the_childs_whole_error(conf: Stack) -> None:
    run = conf.run("conf/invoke-fails")
    assert run["status"] == "completed", run
    assert run["output"] == {"name": "NonRetriableError", "message": "child refused"}
    error = step(run, "call-child")["error"]
    assert error["code"] == "non_retriable_error" and error["message"] == "child refused"
    assert error["stack"]


def test_invoking_a_function_that_is_not_synced_fails_the_step(conf: Stack) -> None:
    run = conf.run("conf/invoke-missing")
    assert run["status"] == "completed", run
    assert run["output"] == {
        "name": "Error", "message": "could not find function with ID: no-such-app-missing"}
    assert step(run, "call-nobody")["status"] == "failed"


# -- attempts and their history --------------------------------------------------------


def test_attempts_and_history(conf: Stack) -> None:
    run = conf.run("conf/retry-history")
    assert run["status"] == "completed", run
    assert run["output"] == {"first": "ok", "then": 1}
    assert seen(conf, run["id"], "attempt") == [0, 1, 2]  # ctx.attempt: the step's own
    assert seen(conf, run["id"], "then-attempt") == [0]
    maybe = step(run, "maybe")
    assert maybe["attempts"] == 3
    history = maybe["history"]
    assert [h["attempt"] for h in history] == [1, 2, 3]
    assert [h["status"] for h in history] == ["errored", "errored", "completed"]
    assert [(h["error"] or {}).get("message") for h in history] == [
        "transient 1", "transient 2", None]
    assert all(h["started_at"] and h["ended_at"] for h in history)
    assert [h["status"] for h in step(run, "then")["history"]] == ["completed"]
    assert run["attempt"] == 3  # the most attempts any call of the run needed


# -- triggers and events ---------------------------------------------------------------


def test_wildcard_trigger_matches(conf: Stack) -> None:
    assert conf.run("confwild/anything.at-all")["output"] == "confwild/anything.at-all"
    assert conf.runs_of_event(conf.send("confwildx/no"), timeout=1) == []


def test_event_fields_are_kept(conf: Stack) -> None:
    event_id = conf.send("conf/nobody-listens", {"a": 1}, v="2024-01-01.1",
                         user={"external_id": "u1"})
    body = conf.api("GET", f"/v1/events/{event_id}").json()
    assert body["v"] == "2024-01-01.1" and body["user"] == {"external_id": "u1"}


def test_send_event_step(conf: Stack) -> None:
    run = conf.run("conf/sender")
    assert run["output"] == {"sent": 1}
    # The Python SDK reports step.send_event exactly like a step.run (no marker on the
    # wire), so it shows as kind "run"; the JS SDK's shows as "send_event".
    assert step(run, "send")["kind"] == "run"


def test_concurrency_key_shows_as_the_runs_queue(conf: Stack) -> None:
    run = conf.run("conf/keyed", {"user": "alice"})
    assert run["queue"] == "alice"
    listed = next(r for r in conf.runs_of(FN + "keyed") if r["id"] == run["id"])
    assert listed["queue"] == "alice"


# -- large data: use_api ---------------------------------------------------------------


def used_api(s: Stack, run_id: str) -> bool:
    """Whether the engine sent a call of ``run_id`` with ``use_api`` (its log says so)."""
    return any("use_api" in line and run_id in line
               for line in s.engine.log_path.read_text(errors="replace").splitlines())


def test_large_step_outputs_go_through_the_api(conf: Stack) -> None:
    """Step outputs up to Inngest's 4 MiB limit are accepted; once the memoized state
    passes 4 MiB the SDK fetches it from /v0/runs/{id}/actions."""
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
    assert run["output"]["events"] == 10
    assert run["output"]["chars"] > 5_000_000
    assert used_api(conf, run["id"])  # the SDK fetched the batch from /v0/runs/{id}/batch


def test_run_page_shows_every_attempt(conf: Stack) -> None:
    if conf.signed:
        pytest.skip("the dashboard needs a login in signed mode; the page is the same")
    run = conf.run("conf/retry-history")
    page = httpx.get(f"{conf.engine.url}/runs/{run['id']}", timeout=30)
    assert page.status_code == 200, page.text[:500]
    assert 'data-attempts="3"' in page.text
    assert "transient 1" in page.text and "transient 2" in page.text


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

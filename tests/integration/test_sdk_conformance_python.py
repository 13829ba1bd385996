"""SDK conformance, Python: each behaviour of the official ``inngest`` 0.5.19 SDK on Inngest,
stated as one scenario (one function of tests/integration/apps/conformance_app.py) and
checked on offload, in dev mode on SQLite and in signed mode on PostgreSQL.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conformance import SETUPS, Stack, seen, stack, step
from tests.integration.conformance_cases import (  # noqa: F401  (collected here)
    test_attempts_and_history,
    test_batch_too_large_to_send_inline,
    test_concurrency_key_shows_as_the_runs_queue,
    test_debounce_runs_once_with_the_last_event,
    test_invoking_a_function_that_is_not_synced_fails_the_step,
    test_large_step_outputs_go_through_the_api,
    test_middleware_runs_in_the_app,
    test_parallel_group_with_invoke_sleep_and_wait_completes,
    test_parent_wakes_whatever_ends_its_child,
    test_rate_limit_drops_the_excess,
    test_singleton_skip_keeps_one_run_per_key,
    test_throttle_spaces_the_starts,
    test_wildcard_trigger_matches,
)
from tests.support.poll import eventually

pytestmark = [pytest.mark.slow]

APP = Path(__file__).parent / "apps" / "conformance_app.py"
FN = "conf-py-"


@pytest.fixture(scope="module")
def prefix() -> str:
    """The app's function id prefix, for the shared scenarios."""
    return FN


@pytest.fixture(scope="module", params=SETUPS, ids=["-".join(s) for s in SETUPS])
def conf(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Stack]:
    mode, store = request.param
    with stack(mode, store, tmp_path_factory.mktemp(f"conf-py-{mode}-{store}"),
               [sys.executable, str(APP)], None, "/seen") as s:
        yield s


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
    got = eventually(lambda: seen(conf, run["id"], "on_failure"), timeout=10, interval=0.1,
                     what="the on_failure handler to record the error")
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


# -- triggers and events ---------------------------------------------------------------


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


# -- large data: use_api ---------------------------------------------------------------


def test_run_page_shows_every_attempt(conf: Stack) -> None:
    if conf.signed:
        pytest.skip("the dashboard needs a login in signed mode; the page is the same")
    run = conf.run("conf/retry-history")
    page = httpx.get(f"{conf.engine.url}/runs/{run['id']}", timeout=30)
    assert page.status_code == 200, page.text[:500]
    assert 'data-attempts="3"' in page.text
    assert "transient 1" in page.text and "transient 2" in page.text


def test_parallel_race_mode(conf: Stack) -> None:
    run = conf.run("conf/race")
    assert run["status"] == "completed", run
    assert run["output"] == {"group": ["fast", "slow"], "tail": "t"}
    assert {s["name"]: s["status"] for s in run["steps"]} == {
        "fast": "completed", "slow": "completed", "tail": "completed"}

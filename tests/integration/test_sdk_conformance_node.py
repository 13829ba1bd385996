"""SDK conformance, TypeScript: each behaviour of the official ``inngest`` 4.24.0 npm SDK on
Inngest, stated as one scenario (one function of tests/integration/node_app/conformance.mjs)
and checked on offload, in dev mode on SQLite and in signed mode on PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
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

pytestmark = [pytest.mark.node, pytest.mark.slow]

APP_DIR = Path(__file__).parent / "node_app"
FN = "conf-node-"


@pytest.fixture(scope="module")
def prefix() -> str:
    """The app's function id prefix, for the shared scenarios."""
    return FN


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
    got = eventually(lambda: seen(conf, run["id"], "on_failure"), timeout=10, interval=0.1,
                     what="the on_failure handler to record the error")
    assert got[0]["error"] == run["error"]  # unchanged, every field
    assert got[0]["function_id"] == FN + "doomed" and got[0]["run_id"] == run["id"]


def test_invoke_parent_gets_the_childs_whole_error(conf: Stack) -> None:
    run = conf.run("conf/invoke-fails")
    assert run["status"] == "completed", run
    assert run["output"] == {"name": "NonRetriableError", "message": "child refused",
                             "cause": {"name": "Error", "message": "root cause"}}
    assert step(run, "call-child")["error"]["cause"]["message"] == "root cause"


# -- triggers and events ---------------------------------------------------------------


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


def test_parallel_race_mode(conf: Stack) -> None:
    """group.parallel({mode: "race"}) + Promise.race: the function goes on with the first
    step to finish (the slower one may still be running when the run ends, as on Inngest)."""
    run = conf.run("conf/race")
    assert run["status"] == "completed", run
    assert run["output"] == {"winner": "fast", "tail": "t"}

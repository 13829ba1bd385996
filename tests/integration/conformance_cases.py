"""Conformance scenarios that read the same on both SDKs.

Each is one function of the same id in tests/integration/apps/conformance_app.py (Python)
and tests/integration/node_app/conformance.mjs (TypeScript); the two suites import
these tests, so each runs once per SDK with that suite's ``conf`` and ``prefix``
fixtures (the engine and app, and the app's function id prefix).
"""

from __future__ import annotations

import time

import pytest

from tests.integration.conformance import Stack, end_invoked_child, seen, step, used_api

__all__ = [
    "test_parallel_group_with_invoke_sleep_and_wait_completes",
    "test_invoking_a_function_that_is_not_synced_fails_the_step",
    "test_attempts_and_history",
    "test_wildcard_trigger_matches",
    "test_concurrency_key_shows_as_the_runs_queue",
    "test_large_step_outputs_go_through_the_api",
    "test_batch_too_large_to_send_inline",
    "test_parent_wakes_whatever_ends_its_child",
    "test_debounce_runs_once_with_the_last_event",
    "test_rate_limit_drops_the_excess",
    "test_throttle_spaces_the_starts",
    "test_singleton_skip_keeps_one_run_per_key",
    "test_middleware_runs_in_the_app",
]


def test_parallel_group_with_invoke_sleep_and_wait_completes(conf: Stack, prefix: str) -> None:
    """Inngest: a group of step.run + invoke + sleep + wait_for_event ends with every
    result, however the quick steps and the slow ones interleave."""
    run = conf.run("conf/parallel-mixed")
    assert run["status"] == "completed", run
    assert run["output"] == {"group": ["a", {"n2": 8}, "b", None, None], "tail": "tail"}
    kinds = {s["name"]: s["kind"] for s in run["steps"]}
    assert kinds == {"quick-a": "run", "quick-b": "run", "call-child": "invoke",
                     "nap": "sleep", "hold": "wait_for_event", "after": "run"}


def test_invoking_a_function_that_is_not_synced_fails_the_step(conf: Stack, prefix: str) -> None:
    run = conf.run("conf/invoke-missing")
    assert run["status"] == "completed", run
    assert run["output"] == {
        "name": "Error", "message": "could not find function with ID: no-such-app-missing"}
    call = step(run, "call-nobody")
    assert call["status"] == "failed" and [h["status"] for h in call["history"]] == ["failed"]


def test_attempts_and_history(conf: Stack, prefix: str) -> None:
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


def test_wildcard_trigger_matches(conf: Stack, prefix: str) -> None:
    assert conf.run("confwild/anything.at-all")["output"] == "confwild/anything.at-all"
    assert conf.final_runs_of_event(conf.send("confwildx/no")) == []


def test_concurrency_key_shows_as_the_runs_queue(conf: Stack, prefix: str) -> None:
    run = conf.run("conf/keyed", {"user": "alice"})
    assert run["queue"] == "alice"
    listed = next(r for r in conf.runs_of(prefix + "keyed") if r["id"] == run["id"])
    assert listed["queue"] == "alice"


def test_large_step_outputs_go_through_the_api(conf: Stack, prefix: str) -> None:
    """Step outputs up to Inngest's 4 MiB limit are accepted; once the memoized state
    passes 4 MiB the SDK fetches it from /v0/runs/{id}/actions."""
    run = conf.run("conf/big-steps")
    assert run["status"] == "completed", run
    assert run["output"] == {"sizes": [1_500_000] * 3, "tail": "small"}
    assert used_api(conf, run["id"])


def test_batch_too_large_to_send_inline(conf: Stack, prefix: str) -> None:
    blob = "x" * 500_000
    ids = [conf.send("conf/batch", {"i": i, "blob": blob}) for i in range(10)]
    runs = conf.runs_of_event(ids[-1], timeout=30)
    assert runs, "the batch started no run"
    run = conf.finish(runs[0]["id"])
    assert run["status"] == "completed", run
    assert run["output"]["events"] == 10
    assert run["output"]["chars"] > 5_000_000
    assert used_api(conf, run["id"])  # the SDK fetched the batch from /v0/runs/{id}/batch


@pytest.mark.parametrize("how", ["api", "bulk", "cancel_on", "timeout"])
def test_parent_wakes_whatever_ends_its_child(conf: Stack, prefix: str, how: str) -> None:
    """Inngest resumes a parent awaiting step.invoke once, with the child's error, however
    the child ended; a parent must never hang on a cancelled or timed-out child."""
    run = end_invoked_child(conf, prefix, how, f"{how}-{time.monotonic_ns()}")
    assert run["status"] == "completed", run
    expected = "FinishTimeoutError" if how == "timeout" else "FunctionCancelledError"
    assert run["output"]["name"] == expected, run["output"]
    assert run["output"]["message"]
    call = step(run, "call-child")
    assert call["status"] == "failed" and len(call["history"]) == 1


def test_debounce_runs_once_with_the_last_event(conf: Stack, prefix: str) -> None:
    key = f"d{time.monotonic_ns()}"
    for n in (1, 2, 3):
        conf.send("conf/debounced", {"k": key, "n": n})
    run = conf.ended_run_of(prefix + "debounced", timeout=30)
    assert run["output"] == 3
    conf.fanned_out()  # each event has started a run or joined the debounced one by now
    assert len([r for r in conf.runs_of(prefix + "debounced")]) == 1


def test_rate_limit_drops_the_excess(conf: Stack, prefix: str) -> None:
    key = f"r{time.monotonic_ns()}"
    first = conf.run("conf/rate-limited", {"k": key, "n": 1})
    assert first["output"] == 1
    second = conf.final_runs_of_event(conf.send("conf/rate-limited", {"k": key, "n": 2}))
    assert all(r["status"] != "completed" for r in second), second


def test_throttle_spaces_the_starts(conf: Stack, prefix: str) -> None:
    key = f"t{time.monotonic_ns()}"
    a = conf.start("conf/throttled", {"k": key})
    b = conf.start("conf/throttled", {"k": key})
    ra, rb = conf.finish(a), conf.finish(b)
    assert {ra["status"], rb["status"]} == {"completed"}
    assert abs(ra["output"] - rb["output"]) >= 1.5  # one start per 2 s for this key


def test_singleton_skip_keeps_one_run_per_key(conf: Stack, prefix: str) -> None:
    key = f"s{time.monotonic_ns()}"
    first = conf.start("conf/singleton-skip", {"k": key, "n": 1})
    second = conf.final_runs_of_event(conf.send("conf/singleton-skip", {"k": key, "n": 2}))
    assert conf.finish(first)["output"] == 1
    assert all(r["status"] != "completed" for r in second), second


def test_middleware_runs_in_the_app(conf: Stack, prefix: str) -> None:
    run = conf.run("conf/middleware")
    assert run["output"] == {"wrapped": "value"}

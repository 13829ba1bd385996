"""``/metrics``: scraped from a real engine after real HTTP tasks, parsed with
prometheus_client's own parser; and the ``traceparent`` sent on every outbound call."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from offload import metrics
from tests.support.engine import EngineProcess
from tests.support.poll import eventually
from tests.support.target import Target

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    t = Target().start()
    t.script("/bad", (400, {}, b"no", 0))
    t.script("/flaky", (503, {}, b"busy", 0), (200, {}, b"ok", 0))
    yield t
    t.stop()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    with EngineProcess(tmp_path_factory.mktemp("metrics")) as e:
        yield e


def _task(client: httpx.Client, **body: Any) -> str:
    r = client.post("/v1/tasks", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


@pytest.fixture(scope="module")
def ran(engine: EngineProcess, target: Target) -> dict[str, Any]:
    """Two successes (one with a callback), one 400, one retried 503, one delayed."""
    with httpx.Client(base_url=engine.url, timeout=30) as c:
        ids = {
            "ok": _task(c, url=f"{target.url}/ok"),
            "callback": _task(c, url=f"{target.url}/ok", callback_url=f"{target.url}/cb"),
            "bad": _task(c, url=f"{target.url}/bad", retries=0),
            "flaky": _task(c, url=f"{target.url}/flaky", retries=2),
            "later": _task(c, url=f"{target.url}/later", delay=3600, queue="later"),
        }
        for key in ("ok", "callback", "bad", "flaky"):
            body = c.get(f"/v1/runs/{ids[key]}/wait", params={"timeout": 30}).json()
            assert body["status"] in ("completed", "failed"), body
        target.wait_for(lambda: target.at("/cb"))

        def callback_counted() -> str | None:  # recorded just after the callback is received
            text = c.get("/metrics").text
            counted = [s for s in _samples(text).get("offload_outbound_requests", [])
                       if s[1].get("kind") == "callback" and s[1].get("outcome") == "success"]
            return text if counted else None

        text = eventually(callback_counted, what="the callback's outcome in /metrics")
    return {"ids": ids, "text": text}


def _samples(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    families: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = [(s.name, dict(s.labels), s.value) for s in family.samples]
    return families


def _value(families: dict[str, Any], family: str, sample: str | None = None,
           **labels: str) -> float:
    total = 0.0
    found = False
    for name, sample_labels, value in families[family]:
        if (sample is None or name == sample) and all(
                sample_labels.get(k) == v for k, v in labels.items()):
            total += value
            found = True
    assert found, (family, sample, labels, families[family])
    return total


def test_metrics__every_family_is_exposed(ran: dict[str, Any]) -> None:
    families = _samples(ran["text"])
    for name in metrics.ALL_NAMES:
        family = name.removesuffix("_total")  # the parser names counters without _total
        assert family in families, name


def test_metrics__stored_state_gauges(ran: dict[str, Any]) -> None:
    f = _samples(ran["text"])
    assert _value(f, "offload_store_up") == 1
    assert _value(f, "offload_runs", function="http", status="completed") == 3
    assert _value(f, "offload_runs", function="http", status="failed") == 1
    assert _value(f, "offload_runs", function="http", status="queued") == 1
    assert _value(f, "offload_dead_letter_runs", function="http") == 1
    assert _value(f, "offload_queue_scheduled", queue="later", function="http") == 1
    assert _value(f, "offload_queue_depth", queue="later", function="http") == 0
    assert _value(f, "offload_queue_oldest_due_age_seconds", queue="later",
                  function="http") == 0


def test_metrics__counters_and_histograms_from_the_engine(ran: dict[str, Any]) -> None:
    f = _samples(ran["text"])
    out = "offload_outbound_requests"
    assert _value(f, out, kind="target", outcome="success") == 3
    assert _value(f, out, kind="target", outcome="fail") == 1
    assert _value(f, out, kind="target", outcome="retry") == 1
    assert _value(f, out, kind="callback", outcome="success") == 1
    assert _value(f, "offload_retries", kind="request") == 1
    assert _value(f, "offload_outbound_request_duration_seconds",
                  "offload_outbound_request_duration_seconds_count", kind="target") == 5
    assert _value(f, "offload_step_duration_seconds", "offload_step_duration_seconds_count",
                  kind="request", status="completed") == 3
    assert _value(f, "offload_step_duration_seconds", "offload_step_duration_seconds_count",
                  kind="request", status="errored") == 1
    # Five target attempts and one callback were picked up from the queue.
    assert _value(f, "offload_pickup_lag_seconds", "offload_pickup_lag_seconds_count",
                  kind="run") == 5
    assert _value(f, "offload_pickup_lag_seconds", "offload_pickup_lag_seconds_count",
                  kind="callback") == 1
    assert _value(f, "offload_store_operation_duration_seconds",
                  "offload_store_operation_duration_seconds_count", operation="apply") >= 6
    assert _value(f, "offload_store_operation_duration_seconds",
                  "offload_store_operation_duration_seconds_count",
                  operation="queue_claim") >= 1


def test_metrics__labels_carry_no_urls_or_ids(ran: dict[str, Any]) -> None:
    assert "127.0.0.1" not in ran["text"]
    for run_id in ran["ids"].values():
        assert run_id not in ran["text"]


def test_traceparent__on_every_call_with_the_runs_trace_id(ran: dict[str, Any],
                                                           target: Target) -> None:
    flaky = ran["ids"]["flaky"]
    expected = hashlib.sha256(flaky.encode()).hexdigest()[:32]
    calls = target.at("/flaky")
    assert len(calls) == 2
    spans = set()
    for call in calls:
        match = TRACEPARENT.match(call.headers["traceparent"])
        assert match, call.headers["traceparent"]
        assert match.group(1) == expected
        spans.add(match.group(2))
    assert len(spans) == 2  # a new span per call
    callback_run = ran["ids"]["callback"]
    (cb,) = target.at("/cb")
    match = TRACEPARENT.match(cb.headers["traceparent"])
    assert match and match.group(1) == hashlib.sha256(callback_run.encode()).hexdigest()[:32]


def test_metrics__needs_an_admin_key_outside_dev(tmp_path: Path) -> None:
    key = "ofk_admin_metrics-test-key-0123456789"
    with EngineProcess(tmp_path, mode="serve", env={"OFFLOAD_API_KEYS": key}) as e:
        assert httpx.get(f"{e.url}/metrics").status_code == 401
        r = httpx.get(f"{e.url}/metrics", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        families = _samples(r.text)
        assert _value(families, "offload_store_up") == 1

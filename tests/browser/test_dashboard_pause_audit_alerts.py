"""Pause and resume buttons, the Audit page and the Alerts page in headless Chromium,
against a real engine, a real Inngest SDK app (official ``inngest`` package) and a real
HTTP target and alert receiver on loopback. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser.test_dashboard import _shot, browser  # noqa: F401 - a shared fixture
from tests.browser.test_dashboard_ops import sdk_app  # noqa: F401 - a shared fixture
from tests.support.engine import EngineProcess
from tests.support.poll import eventually
from tests.support.settled import held_by_pause
from tests.support.target import Target

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    t = Target().start()
    t.script("/bad", (400, {}, b"bad", 0.0))
    yield t
    t.stop()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    with EngineProcess(tmp_path_factory.mktemp("dash-pause"),
                       env={"OFFLOAD_ALERT_EVERY_S": "0.3"}) as e:
        yield e


@pytest.fixture(scope="module")
def api(engine: EngineProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=engine.url, timeout=30) as c:
        yield c


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:  # noqa: F811 - the imported browser fixture
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    pg.on("dialog", lambda dialog: dialog.accept())
    yield pg
    context.close()


def _task(api: httpx.Client, url: str, **kw: Any) -> str:
    r = api.post("/v1/tasks", json={"url": url, **kw})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def _status(api: httpx.Client, run_id: str) -> str:
    return str(api.get(f"/v1/runs/{run_id}").json()["status"])


def test_queue_pause_and_resume_buttons(page: Any, engine: EngineProcess, api: httpx.Client,
                                        target: Target) -> None:
    page.goto(f"{engine.url}/queues")
    page.fill("#pause-by-name input[name=name]", "mail")
    page.click("#pause-by-name button[type=submit]")
    page.wait_for_url(re.compile(r"/queues$"))
    assert page.locator('#pause-queues tr[data-queue="mail"]').get_attribute(
        "data-paused") == "yes"

    run_id = _task(api, f"{target.url}/mail", queue="mail")
    held_by_pause(api, "mail", 1)  # a claim met it and gave it back
    assert _status(api, run_id) == "queued" and target.at("/mail") == []
    page.reload()
    row = page.locator('#pause-queues tr[data-queue="mail"]')
    assert "paused" in row.inner_text() and "1" in row.locator("td.num").inner_text()
    _shot(page, "queues-paused")

    row.locator('button[data-queue-action="resume"]').click()
    page.wait_for_url(re.compile(r"/queues$"))
    eventually(lambda: _status(api, run_id) == "completed", timeout=30, interval=0.1,
               what=f"run {run_id} to complete")
    # active again (or gone from the list: an empty queue without a pause is not shown)
    assert page.locator('#pause-queues tr[data-queue="mail"][data-paused="yes"]').count() == 0
    assert api.get("/v1/queues/mail").json()["paused"] is False

    page.goto(f"{engine.url}/audit?action=queue.pause")
    rows = page.locator("#audit-table tr[data-action]")
    assert rows.count() >= 1
    assert {r for r in rows.evaluate_all("rs => rs.map(r => r.dataset.action)")} == \
        {"queue.pause"}
    assert "dashboard" in rows.first.inner_text() and "mail" in rows.first.inner_text()


def test_function_pause_button_holds_a_durable_function(page: Any, engine: EngineProcess,
                                                        api: httpx.Client,
                                                        sdk_app: str) -> None:  # noqa: F811
    fn = "pyapp-two-steps"
    page.goto(f"{engine.url}/functions/{fn}")
    assert page.locator("#pause-toggle").inner_text() == "Pause"
    page.click("#pause-toggle")
    page.wait_for_url(re.compile(f"/functions/{fn}$"))
    assert page.locator("#paused").count() == 1
    assert page.locator("#pause-toggle").inner_text() == "Resume"
    assert api.get(f"/v1/functions/{fn}").json()["paused"] is True
    in_apps = {f["id"]: f for a in api.get("/v1/apps").json()["data"] for f in a["functions"]}
    assert in_apps[fn]["paused"] is True and in_apps[fn]["pause"]["paused_by"]
    _shot(page, "function-paused")
    page.goto(f"{engine.url}/apps")
    assert page.locator(f'[data-paused="{fn}"]').count() == 1  # marked in the app's list
    page.goto(f"{engine.url}/functions/{fn}")

    event = api.post("/v1/events", json={"name": "t/two", "data": {"value": 7}}).json()
    run_id = eventually(lambda: (api.get(f"/v1/events/{event['ids'][0]}").json().get("runs")
                                 or [{}])[0].get("id"),
                        timeout=30, interval=0.1, what="the run of the t/two event")
    held_by_pause(api, "default", 1)  # a durable run's items queue in "default"
    assert _status(api, run_id) == "queued"

    page.click("#pause-toggle")
    page.wait_for_url(re.compile(f"/functions/{fn}$"))
    assert page.locator("#paused").count() == 0
    eventually(lambda: _status(api, run_id) == "completed", timeout=30, interval=0.1,
               what=f"run {run_id} to complete")
    listed = {f["id"]: f for f in api.get("/v1/functions").json()["data"]}
    assert listed[fn]["paused"] is False


def test_run_page_shows_who_cancelled_and_audit_page_links_it(page: Any,
                                                              engine: EngineProcess,
                                                              api: httpx.Client,
                                                              target: Target) -> None:
    run_id = _task(api, f"{target.url}/later", delay=3600)
    page.goto(f"{engine.url}/runs/{run_id}")
    page.click("#cancel")
    page.wait_for_url(re.compile(rf"/runs/{run_id}\?notice=cancelled"))
    actions = page.locator("#run-actions")
    assert "run.cancel" in actions.inner_text() and "dashboard" in actions.inner_text()

    page.goto(f"{engine.url}/audit")
    page.fill("#audit-filters input[name=target]", run_id)
    page.click("#audit-filters button[type=submit]")
    page.wait_for_url(re.compile(r"/audit\?.*target="))
    rows = page.locator("#audit-table tr[data-action]")
    assert rows.count() == 1 and rows.first.get_attribute("data-action") == "run.cancel"
    _shot(page, "audit")
    rows.first.locator(f'a[href="/runs/{run_id}"]').click()
    page.wait_for_url(re.compile(rf"/runs/{run_id}$"))


def test_alerts_page_shows_a_firing_rule_and_its_notification(page: Any,
                                                              engine: EngineProcess,
                                                              api: httpx.Client,
                                                              target: Target) -> None:
    made = api.post("/v1/alerts", json={
        "name": "dlq-growing", "kind": "dead_letter_growth", "queue": "dlq",
        "threshold": 1, "window_s": 600, "url": f"{target.url}/hook"})
    assert made.status_code == 201, made.text
    page.goto(f"{engine.url}/alerts")
    assert page.locator('#alert-rules tr[data-rule="dlq-growing"]').get_attribute(
        "data-state") in ("pending", "ok")

    _task(api, f"{target.url}/bad", queue="dlq", retries=0)
    eventually(lambda: [r for r in target.at("/hook")
                        if json.loads(r.body)["status"] == "firing"],
               timeout=30, interval=0.1, what="a firing alert at the webhook")
    page.goto(f"{engine.url}/alerts")
    assert page.locator('#alert-rules tr[data-rule="dlq-growing"]').get_attribute(
        "data-state") == "firing"
    assert "1 firing" in page.locator("#firing-count").inner_text()
    event = page.locator('#alert-events tr[data-rule="dlq-growing"]').first
    assert event.get_attribute("data-status") == "firing"
    assert "1 runs of queue dlq failed" in event.inner_text()
    _shot(page, "alerts")
    event.locator("a").click()
    page.wait_for_url(re.compile(r"/runs/[0-9A-Z]{26}$"))
    assert "offload.alerts" in page.locator("body").inner_text()


def test_http_tasks_page_pauses_every_task(page: Any, engine: EngineProcess,
                                           api: httpx.Client, target: Target) -> None:
    page.goto(f"{engine.url}/functions/http")
    page.click("#pause-toggle")
    page.wait_for_url(re.compile(r"/functions/http$"))
    assert page.locator("#paused").count() == 1
    run_id = _task(api, f"{target.url}/held-http", queue="any-queue")
    held_by_pause(api, "any-queue", 1)
    assert _status(api, run_id) == "queued"
    page.click("#pause-toggle")
    page.wait_for_url(re.compile(r"/functions/http$"))
    assert page.locator("#paused").count() == 0
    eventually(lambda: _status(api, run_id) == "completed", timeout=30, interval=0.1,
               what=f"run {run_id} to complete")

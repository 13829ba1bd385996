"""The operator pages in headless Chromium against real engines, a real Inngest SDK app
and real HTTP targets: the function page and its Invoke form, sending events and the
live event list, the failed view draining as failures are replayed, bulk confirmations
that show the count, HTTP tasks shown as METHOD host/path with their name, the Engines
page (two engines on one PostgreSQL), /docs with no network, and UTC chart times.

Screenshots of each page go to tests/artifacts/.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.browser.test_dashboard import _shot, browser  # noqa: F401 - a shared fixture
from tests.conftest import postgres_schema
from tests.support.engine import EngineProcess, free_port
from tests.support.poll import answers, eventually
from tests.support.target import Target

pytestmark = pytest.mark.browser

APP_SCRIPT = Path(__file__).resolve().parents[1] / "integration" / "apps" / "py_app.py"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    with EngineProcess(tmp_path_factory.mktemp("dash-ops")) as e:
        yield e


@pytest.fixture(scope="module")
def api(engine: EngineProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=engine.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    t = Target().start()
    t.script("/bad", (400, {"content-type": "application/json"}, b'{"error": "bad"}', 0))
    yield t
    t.stop()


@pytest.fixture(scope="module")
def sdk_app(engine: EngineProcess, api: httpx.Client,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The py_app test app (official inngest SDK), synced with the engine."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
    env["INNGEST_DEV"] = engine.url
    log = (tmp_path_factory.mktemp("dash-app") / "app.log").open("ab")
    proc = subprocess.Popen([sys.executable, str(APP_SCRIPT), "--framework", "fastapi",
                             "--port", str(port)], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        eventually(lambda: answers(f"http://127.0.0.1:{port}/counts"), timeout=30, interval=0.1,
                   what="the SDK app to start")
        r = api.post("/v1/apps", json={"url": f"http://127.0.0.1:{port}/api/inngest"})
        assert r.status_code == 200, r.text
        yield "pyapp"
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:  # noqa: F811 - the imported browser fixture
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    pg.dialogs = []  # type: ignore[attr-defined]

    def on_dialog(dialog: Any) -> None:
        pg.dialogs.append(dialog.message)  # type: ignore[attr-defined]
        dialog.accept()
    pg.on("dialog", on_dialog)
    yield pg
    context.close()


def _task(api: httpx.Client, url: str, **kw: Any) -> str:
    r = api.post("/v1/tasks", json={"url": url, **kw})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def _wait(api: httpx.Client, run_id: str) -> dict[str, Any]:
    body: dict[str, Any] = api.get(f"/v1/runs/{run_id}/wait", params={"timeout": 30},
                                   timeout=40).json()
    assert body["status"] in ("completed", "failed", "cancelled"), body
    return body


def _run_of_event(api: httpx.Client, event_id: str) -> str:
    runs = eventually(lambda: api.get(f"/v1/events/{event_id}").json()["runs"], timeout=30,
                      interval=0.1, what=f"a run of event {event_id}")
    return str(runs[0]["id"])


def _row_ids(page: Any, where: str = "#run-list") -> list[str]:
    return [str(v) for v in page.locator(f"{where} tr[data-run-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.runId)")]


# -- function page ------------------------------------------------------------------------------

def test_function_page__config_health_runs_and_invoke(page: Any, engine: EngineProcess,
                                                      api: httpx.Client, sdk_app: str) -> None:
    event = api.post("/v1/events", json={"name": "t/two", "data": {"value": 1}}).json()["ids"][0]
    earlier = _run_of_event(api, event)
    _wait(api, earlier)

    page.goto(f"{engine.url}/functions/pyapp-two-steps")
    assert "two-steps" in page.locator("h1").inner_text()
    assert page.locator("#active").count() == 1 and page.locator("#paused").count() == 0
    assert "t/two" in page.locator("#triggers").inner_text()
    assert int(page.locator('[data-stat="completed"]').inner_text()) >= 1
    assert re.search(r"\d+ ms|\d\.\d+ s", page.locator('[data-stat="p50"]').inner_text())
    assert "%" in page.locator('[data-stat="failure_rate"]').inner_text()
    assert earlier in _row_ids(page, "#function-runs")

    page.fill("#invoke-form textarea[name=data]", '{"value": 42}')
    page.click("#invoke-submit")
    page.wait_for_url(re.compile(r"/runs/[0-9A-Z]{26}$"))
    run_id = page.url.rsplit("/", 1)[1]
    assert run_id != earlier
    done = _wait(api, run_id)
    assert done["function_id"] == "pyapp-two-steps" and done["output"]["b"] == {"got": 42}
    _shot(page, "run-invoked")

    page.goto(f"{engine.url}/functions/pyapp-two-steps")
    page.fill("#invoke-form textarea[name=data]", "{not json")
    page.click("#invoke-submit")
    assert "not valid JSON" in page.locator("#invoke-error").inner_text()
    assert page.locator("#invoke-form textarea").input_value() == "{not json"
    page.fill("#invoke-form textarea[name=data]", "[1, 2]")
    page.click("#invoke-submit")
    assert "must be a JSON object" in page.locator("#invoke-error").inner_text()

    assert api.post("/v1/functions/pyapp-two-steps/pause").status_code == 200
    page.goto(f"{engine.url}/functions/pyapp-two-steps")
    assert page.locator("#paused").count() == 1 and page.locator("#active").count() == 0
    assert api.post("/v1/functions/pyapp-two-steps/resume").status_code == 200

    page.goto(f"{engine.url}/functions/pyapp-serial")
    assert "concurrency" in page.locator("#flow").inner_text()
    _shot(page, "function")

    page.goto(f"{engine.url}/apps")
    page.click("a[href='/functions/pyapp-two-steps']")
    page.wait_for_url(re.compile(r"/functions/pyapp-two-steps$"))
    assert page.goto(f"{engine.url}/functions/nope").status == 404


# -- events ------------------------------------------------------------------------------------

def test_events_page__send_a_test_event_and_watch_the_live_list(
        page: Any, engine: EngineProcess, api: httpx.Client, sdk_app: str) -> None:
    page.goto(f"{engine.url}/events")
    page.click("#send-event summary")
    page.fill("#send-form input[name=name]", "t/two")
    page.fill("#send-form textarea[name=data]", '{"value": "from the dashboard"}')
    page.click("#send-submit")
    page.wait_for_url(re.compile(r"/events/[0-9A-Z]{26}\?notice=event_sent$"))
    assert "Event sent" in page.locator(".notice").inner_text()
    event_id = urlsplit(page.url).path.rsplit("/", 1)[1]
    run_id = _run_of_event(api, event_id)
    done = _wait(api, run_id)
    assert done["output"]["b"] == {"got": "from the dashboard"}

    page.goto(f"{engine.url}/events")
    names = page.locator("#event-list tr[data-event-name]").evaluate_all(
        "rows => rows.map(r => r.dataset.eventName)")
    assert "t/two" in names
    assert not [n for n in names if n.startswith("inngest/")]  # function.finished is hidden

    live = api.post("/v1/events", json={"name": "dash/live", "data": {}}).json()["ids"][0]
    page.wait_for_selector(f"#event-list tr[data-event-id='{live}']", timeout=10_000)
    _shot(page, "events")

    page.check("#show-internal")
    page.click("#event-filters button[type=submit]")
    page.wait_for_url(re.compile(r"internal=1"))
    names = page.locator("#event-list tr[data-event-name]").evaluate_all(
        "rows => rows.map(r => r.dataset.eventName)")
    assert "inngest/function.finished" in names

    page.goto(f"{engine.url}/events")
    page.click("#send-event summary")
    page.fill("#send-form input[name=name]", "dash/bad")
    page.fill("#send-form textarea[name=data]", "[1]")
    page.click("#send-submit")
    assert "data: must be a JSON object" in page.locator("#send-error").inner_text()


# -- failed view, bulk confirmations, HTTP task labels ---------------------------------------------

def test_failed_view__a_replayed_failure_leaves_the_list(page: Any, engine: EngineProcess,
                                                         api: httpx.Client,
                                                         target: Target) -> None:
    original = _task(api, f"{target.url}/bad", retries=0, queue="drain")
    _wait(api, original)
    page.goto(f"{engine.url}/failed?queue=drain")
    assert _row_ids(page) == [original]

    page.goto(f"{engine.url}/runs/{original}")
    page.click("#replay")
    page.wait_for_url(lambda url: original not in url)
    replay = page.url.rsplit("/", 1)[1]
    _wait(api, replay)  # the target still answers 400: the replay fails too

    page.goto(f"{engine.url}/failed?queue=drain")
    assert _row_ids(page) == [replay]  # the original drained out; its replay is new
    page.check("#show-replayed")
    page.click("#run-filters button[type=submit]")
    page.wait_for_url(re.compile(r"replayed=1"))
    assert _row_ids(page) == [replay, original]
    row = page.locator(f"#run-list tr[data-run-id='{original}']")
    assert f"replayed as {replay}" in row.inner_text()
    _shot(page, "failed-replayed")

    page.goto(f"{engine.url}/runs/{original}")
    assert page.locator("#replayed-as").inner_text() == replay

    page.goto(f"{engine.url}/failed")
    page.evaluate("window.confirm = (m) => { window.lastConfirm = m; return false; }")
    page.click("#bulk-replay")
    count = page.locator("#bulk-count").inner_text()
    runs = "run" if count == "1" else "runs"
    assert page.evaluate("window.lastConfirm") == \
        f"Replay {count} {runs} matching every failed run not yet replayed, not just this page?"


def test_bulk_actions__confirm_with_the_count(page: Any, engine: EngineProcess,
                                              api: httpx.Client, target: Target) -> None:
    ids = [_task(api, f"{target.url}/later", delay=3600, queue="confirm") for _ in range(3)]
    page.goto(f"{engine.url}/runs?queue=confirm")
    assert page.locator("#bulk-count").inner_text() == "3"
    page.click("#bulk-cancel")
    page.wait_for_url(re.compile(r"/bulk/"))
    assert page.dialogs == ["Cancel 3 runs matching this filter, not just this page?"]
    page.wait_for_function(
        "() => document.querySelector('#bulk-status').innerText.includes('done')")
    assert {api.get(f"/v1/runs/{i}").json()["status"] for i in ids} == {"cancelled"}

    # Unfiltered: the dialog says so and shows the count of every run.
    total = len(api.get("/v1/runs", params={"limit": 500}).json()["data"])
    page.goto(f"{engine.url}/runs")
    page.evaluate("window.confirm = (m) => { window.lastConfirm = m; return false; }")
    page.click("#bulk-cancel")
    message = page.evaluate("window.lastConfirm")
    assert message == f"Cancel {total} runs matching NO filter (every run), not just this page?"
    assert page.url.endswith("/runs")  # declined: nothing was submitted

    # Without JavaScript (or a hand-made POST) the server asks first, with the count.
    token = page.locator("#bulk-form input[name=csrf]").get_attribute("value")
    r = page.context.request.post(f"{engine.url}/runs/bulk",
                                  form={"csrf": token, "action": "cancel"})
    assert r.status == 200
    text = r.text()
    assert "no filter at all: every run" in text and f">{total}<" in text
    live = [i for i in ids if api.get(f"/v1/runs/{i}").json()["status"] != "cancelled"]
    assert live == []
    page.set_content(text)
    _shot(page, "bulk-confirm")


def test_http_tasks__method_host_path_and_name(page: Any, engine: EngineProcess,
                                               api: httpx.Client, target: Target) -> None:
    named = _task(api, f"{target.url}/reports/nightly?x=1", method="PUT", name="nightly-42",
                  body={"a": 1})
    other = _task(api, f"{target.url}/other", method="GET")
    _wait(api, named)
    _wait(api, other)
    host = urlsplit(target.url).netloc
    page.goto(f"{engine.url}/runs")
    row = page.locator(f"#run-list tr[data-run-id='{named}']")
    assert f"PUT {host}/reports/nightly" in row.inner_text()
    assert "nightly-42" in row.inner_text()
    assert f"GET {host}/other" in page.locator(f"#run-list tr[data-run-id='{other}']").inner_text()
    assert [r["id"] for r in api.get("/v1/runs", params={"name": "nightly-42"}).json()["data"]] \
        == [named]

    page.goto(f"{engine.url}/runs/{named}")
    assert page.locator("#task-target").inner_text() == f"PUT {host}/reports/nightly nightly-42"
    page.goto(f"{engine.url}/runs")
    page.fill("#run-filters input[name=name]", "nightly-42")
    page.click("#run-filters button[type=submit]")
    page.wait_for_url(re.compile(r"name=nightly-42"))
    assert _row_ids(page) == [named]
    _shot(page, "runs-http-tasks")


# -- engines, docs, charts -----------------------------------------------------------------------

def test_engines_page__two_engines_alive_then_one_stops(page: Any, tmp_path: Path,
                                                        target: Target) -> None:
    target.script("/slow", (200, {}, b"ok", 6.0))
    with postgres_schema() as database_url:
        a = EngineProcess(tmp_path / "a", database_url=database_url).start()
        b = EngineProcess(tmp_path / "b", database_url=database_url).start()
        try:
            assert a.proc is not None and b.proc is not None
            page.goto(f"{a.url}/engines")
            rows = page.locator("#engines tr[data-engine-id]")
            assert rows.count() == 2
            text = page.locator("#engines").inner_text()
            assert str(a.proc.pid) in text and str(b.proc.pid) in text
            assert page.locator("#engines tr.alive").count() == 2
            assert page.locator("#engines .badge", has_text="this engine").count() == 1
            leases = page.locator("#engines td[data-leases]").all_inner_texts()
            assert [v.strip() for v in leases] == ["0", "0"]
            slow = httpx.post(f"{a.url}/v1/tasks", json={"url": f"{target.url}/slow"}).json()
            page.wait_for_function(  # the auto-refresh shows the lease of the call in flight
                "() => [...document.querySelectorAll('#engines td[data-leases]')]"
                ".map(td => +td.innerText).reduce((x, y) => x + y, 0) === 1", timeout=10_000)
            _shot(page, "engines")
            httpx.get(f"{a.url}/v1/runs/{slow['id']}/wait", params={"timeout": 20}, timeout=30)

            b.kill(signal.SIGTERM)  # a clean stop removes its row
            page.wait_for_function(
                "() => document.querySelectorAll('#engines tr[data-engine-id]').length === 1",
                timeout=15_000)
            assert str(a.proc.pid) in page.locator("#engines").inner_text()

            c = EngineProcess(tmp_path / "c", database_url=database_url).start()
            assert c.proc is not None
            page.wait_for_selector(f"#engines tr.alive:has-text('{c.proc.pid}')")
            c.kill()  # SIGKILL: no clean stop, the heartbeat just ends
            page.wait_for_selector(f"#engines tr.missing:has-text('{c.proc.pid}')",
                                   timeout=30_000)
            assert page.locator("#engines tr.alive").count() == 1
            assert page.locator("#alive-count").inner_text() == "1"
        finally:
            a.kill()
            b.kill()


def test_docs__render_with_no_network(page: Any, engine: EngineProcess) -> None:
    refused: list[str] = []

    def only_the_engine(route: Any) -> None:
        if urlsplit(route.request.url).netloc == urlsplit(engine.url).netloc:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()
    page.route("**/*", only_the_engine)
    page.goto(f"{engine.url}/docs")
    page.wait_for_selector(".opblock", timeout=20_000)
    assert page.locator(".opblock").count() > 10
    assert "/v1/tasks" in page.locator("#swagger-ui").inner_text()
    assert refused == []
    _shot(page, "docs")


def test_overview__chart_times_are_utc_dates(page: Any, engine: EngineProcess) -> None:
    page.goto(f"{engine.url}/")
    page.wait_for_selector("#chart-throughput .u-over")
    box = page.locator("#chart-throughput .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
    shown = page.locator("#chart-throughput .u-legend .u-series").first.inner_text()
    match = re.search(r"(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):\d{2} UTC", shown)
    assert match, shown
    now = datetime.now(UTC)
    assert (int(match[1]), int(match[2]), int(match[3])) == (now.year, now.month, now.day) \
        or now.hour == 0  # just past midnight the hovered minute may be yesterday's


def test_run_page__every_attempt_of_a_step(page: Any, engine: EngineProcess, api: httpx.Client,
                                           sdk_app: str) -> None:
    event = api.post("/v1/events", json={"name": "t/flaky", "data": {}}).json()["ids"][0]
    run_id = _run_of_event(api, event)
    done = _wait(api, run_id)
    assert done["status"] == "completed"
    step = next(s for s in done["steps"] if s["name"] == "maybe")
    assert len(step["history"]) == 2

    page.goto(f"{engine.url}/runs/{run_id}")
    article = page.locator("article.step", has_text="maybe")
    rows = article.locator("table.attempts tr.attempt")
    assert rows.count() == 2
    first, second = rows.nth(0).inner_text(), rows.nth(1).inner_text()
    assert "failed" in first or "errored" in first
    assert "transient" in first and "ValueError" in first
    assert "completed" in second and "transient" not in second
    assert re.search(r"\d+ ms", second)
    _shot(page, "run-attempts")


def test_run_page__the_engine_restart_a_run_lived_through(page: Any, tmp_path: Path,
                                                          target: Target) -> None:
    target.script("/restart", (200, {}, b"slow", 30.0), (200, {}, b"ok", 0.0))
    first = EngineProcess(tmp_path / "e").start()
    run_id = httpx.post(f"{first.url}/v1/tasks", json={"url": f"{target.url}/restart"}).json()["id"]
    target.wait_for(lambda: target.at("/restart"))  # the call is in flight
    first.kill()  # SIGKILL mid-call
    second = EngineProcess(tmp_path / "e").start()  # same data dir: takes the lease back
    try:
        done = httpx.get(f"{second.url}/v1/runs/{run_id}/wait", params={"timeout": 30},
                         timeout=40).json()
        assert done["status"] == "completed" and len(done["restarts"]) == 1
        page.goto(f"{second.url}/runs/{run_id}")
        assert page.locator("#restart-count").inner_text() == "1"
        assert "UTC" in page.locator("#restarts").inner_text()
        _shot(page, "run-restarted")
    finally:
        second.kill()


def test_new_pages__need_a_login_outside_dev(tmp_path: Path) -> None:
    key = "ofk_admin_dash-ops-login-0123456789abcdef"
    with EngineProcess(tmp_path, mode="serve", env={"OFFLOAD_API_KEYS": key}) as served:
        for path in ("/engines", "/functions/x", "/events", "/failed"):
            r = httpx.get(f"{served.url}{path}", follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
        for path in ("/events/send", "/functions/x/invoke", "/runs/bulk"):
            r = httpx.post(f"{served.url}{path}", data={"name": "x", "action": "cancel"})
            assert r.status_code == 403, path
        assert httpx.get(f"{served.url}/v1/engines").status_code == 401
        listed = httpx.get(f"{served.url}/v1/engines",
                           headers={"Authorization": f"Bearer {key}"}).json()["data"]
        assert len(listed) == 1 and listed[0]["alive"]
        assert httpx.get(f"{served.url}/docs").status_code == 200

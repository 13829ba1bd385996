"""The dashboard in headless Chromium against a real engine process with real runs.

Needs Debian's chromium at /usr/bin/chromium (Playwright's own browser download is
not used). Skipped with a loud reason locally when it is missing; fails in CI.
Screenshots of the main pages go to tests/artifacts/ (gitignored).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.engine import EngineProcess
from tests.support.target import Target

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ADMIN_KEY = "ofk_admin_browser-test-key-0123456789"
PASSWORD = "correct horse battery staple"


def _require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    message = f"{CHROMIUM} is missing: apt-get install -y chromium"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(f"SKIPPING BROWSER TEST — {message}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    t = Target().start()
    t.script("/bad", (400, {"content-type": "application/json"}, b'{"error": "bad input"}', 0))
    yield t
    t.stop()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    with EngineProcess(tmp_path_factory.mktemp("dash-dev")) as e:
        yield e


@pytest.fixture(scope="module")
def api(engine: EngineProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=engine.url, timeout=30) as c:
        yield c


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    pg.on("dialog", lambda dialog: dialog.accept())
    yield pg
    context.close()


def _task(api: httpx.Client, url: str, **kw: Any) -> str:
    r = api.post("/v1/tasks", json={"url": url, **kw})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def _wait(api: httpx.Client, run_id: str) -> dict[str, Any]:
    body: dict[str, Any] = api.get(f"/v1/runs/{run_id}/wait", params={"timeout": 20}).json()
    assert body["status"] in ("completed", "failed", "cancelled"), body
    return body


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def runs(api: httpx.Client, target: Target) -> dict[str, list[str]]:
    """Completed, failed (400, no retries) and delayed (still queued) HTTP tasks."""
    ok = [_task(api, f"{target.url}/ok", body={"order": i},
                headers={"Authorization": "Bearer super-secret-token"}) for i in range(3)]
    bad = [_task(api, f"{target.url}/bad", retries=0, body={"n": i}) for i in range(2)]
    later = [_task(api, f"{target.url}/later", delay=3600, queue="slow")]
    for run_id in ok + bad:
        _wait(api, run_id)
    return {"ok": ok, "bad": bad, "later": later}


def _row_ids(page: Any) -> list[str]:
    return [str(v) for v in page.locator("#run-list tr[data-run-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.runId)")]


# -- dev mode: open, with a banner -----------------------------------------------------------

def test_runs__list_filter_and_search(page: Any, engine: EngineProcess,
                                      runs: dict[str, list[str]]) -> None:
    page.goto(f"{engine.url}/runs")
    assert "Development mode" in page.locator(".banner-dev").inner_text()
    ids = _row_ids(page)
    for run_id in runs["ok"] + runs["bad"] + runs["later"]:
        assert run_id in ids
    assert ids == sorted(ids, reverse=True)  # newest first
    _shot(page, "runs")

    page.select_option("select[name=status]", "failed")
    page.click("#run-filters button[type=submit]")
    page.wait_for_url(re.compile(r"status=failed"))
    assert set(_row_ids(page)) >= set(runs["bad"])
    assert not set(_row_ids(page)) & set(runs["ok"])
    assert "answered 400" in page.locator("#run-list").inner_text()

    page.goto(f"{engine.url}/runs?queue=slow")
    assert _row_ids(page) == runs["later"]

    page.goto(f"{engine.url}/runs")
    page.fill("input[name=q]", runs["ok"][1])
    page.click("#run-filters button[type=submit]")
    page.wait_for_url(re.compile(r"q="))
    assert _row_ids(page) == [runs["ok"][1]]


def test_runs__cursor_pagination(page: Any, engine: EngineProcess, api: httpx.Client,
                                 target: Target, runs: dict[str, list[str]]) -> None:
    extra = [_task(api, f"{target.url}/page", delay=3600, queue="paged") for _ in range(55)]
    page.goto(f"{engine.url}/runs?queue=paged")
    first = _row_ids(page)
    assert len(first) == 50
    page.click("#next-page")
    page.wait_for_url(re.compile(r"cursor="))
    second = _row_ids(page)
    assert len(second) == 5 and not set(first) & set(second)
    assert set(first) | set(second) == set(extra)


def test_run_page__header_steps_and_no_secrets(page: Any, engine: EngineProcess,
                                                runs: dict[str, list[str]]) -> None:
    page.goto(f"{engine.url}/runs/{runs['bad'][0]}")
    header = page.locator(".title-row h1").inner_text()
    assert runs["bad"][0] in header and "failed" in header
    assert "HTTP task" in page.locator("dl.facts").inner_text()
    assert "answered 400" in page.locator("#run-error").inner_text()
    step = page.locator("article.step").first
    assert "request" in step.inner_text() and "failed" in step.inner_text()
    assert "bad input" in step.locator("details.json").nth(1).inner_text()  # the response body
    assert page.locator("#timeline .tl-bar").count() >= 2
    _shot(page, "run-failed")

    page.goto(f"{engine.url}/runs/{runs['ok'][0]}")
    text = page.content()
    assert "super-secret-token" not in text  # the task's Authorization header is redacted
    assert "completed" in page.locator(".title-row h1").inner_text()
    _shot(page, "run-completed")


def test_run_page__cancel(page: Any, engine: EngineProcess, api: httpx.Client,
                          target: Target) -> None:
    run_id = _task(api, f"{target.url}/later", delay=3600)
    page.goto(f"{engine.url}/runs/{run_id}")
    page.click("#cancel")
    page.wait_for_selector(".notice")
    assert "Run cancelled" in page.locator(".notice").inner_text()
    assert "cancelled" in page.locator(".title-row h1").inner_text()
    assert api.get(f"/v1/runs/{run_id}").json()["status"] == "cancelled"
    assert page.locator("#cancel").count() == 0


def test_run_page__replay(page: Any, engine: EngineProcess, api: httpx.Client,
                          runs: dict[str, list[str]]) -> None:
    original = runs["ok"][2]
    page.goto(f"{engine.url}/runs/{original}")
    page.click("#replay")
    page.wait_for_url(lambda url: "/runs/" in url and original not in url.split("/runs/")[1])
    new_id = page.url.rsplit("/", 1)[1]
    assert original in page.locator("dl.facts").inner_text()  # "replay of <original>"
    replayed = _wait(api, new_id)
    assert replayed["replay_of"] == original and replayed["status"] == "completed"
    assert replayed["input"]["body"] == {"order": 2}


def test_run_page__rerun_from_step_with_edited_input(page: Any, engine: EngineProcess,
                                                     api: httpx.Client, target: Target) -> None:
    target.script("/picky", (400, {}, b"needs ok", 0.0))
    target.script("/picky-ok", (200, {}, b"fine", 0.0))
    failed = _task(api, f"{target.url}/picky", retries=0, body={"ok": False})
    assert _wait(api, failed)["status"] == "failed"
    page.goto(f"{engine.url}/runs/{failed}")
    page.click("details.rerun summary")
    page.fill("details.rerun textarea[name=input]", '{"body": {"ok": true}}')
    page.click("details.rerun button[type=submit]")
    page.wait_for_url(lambda url: "/runs/" in url and failed not in url.split("/runs/")[1])
    rerun = _wait(api, page.url.rsplit("/", 1)[1])
    assert rerun["replay_of"] == failed and rerun["input"]["body"] == {"ok": True}
    assert [r.body for r in target.at("/picky")][-1] == b'{"ok":true}'
    _shot(page, "rerun")


def test_failed_view__bulk_replay(page: Any, engine: EngineProcess, api: httpx.Client,
                                  target: Target, runs: dict[str, list[str]]) -> None:
    before = len(target.at("/bad"))
    failed_ids = {r["id"] for r in api.get("/v1/runs", params={"status": "failed",
                                                                "limit": 500}).json()["data"]}
    assert set(runs["bad"]) <= failed_ids
    # The failed view leaves out failures already replayed (or rerun) by an earlier test.
    replayed = {r["replay_of"] for r in api.get("/v1/runs", params={"limit": 500}).json()["data"]}
    failed_ids -= replayed
    page.goto(f"{engine.url}/failed")
    assert set(_row_ids(page)) == failed_ids
    _shot(page, "failed")
    page.click("#bulk-replay")
    page.wait_for_url(re.compile(r"/bulk/"))
    page.wait_for_function(
        "() => document.querySelector('#bulk-status').innerText.includes('done')")
    assert f"{len(failed_ids)} runs replayed" in page.locator("#bulk-status").inner_text()
    _shot(page, "bulk")
    replays = [r for r in api.get("/v1/runs", params={"limit": 500}).json()["data"]
               if r["replay_of"] in failed_ids]
    assert {r["replay_of"] for r in replays} == failed_ids
    target.wait_for(lambda: len(target.at("/bad")) >= before + len(runs["bad"]))


def test_runs__bulk_cancel_by_filter(page: Any, engine: EngineProcess, api: httpx.Client,
                                     target: Target) -> None:
    ids = [_task(api, f"{target.url}/later", delay=3600, queue="bulk-cancel") for _ in range(4)]
    page.goto(f"{engine.url}/runs?queue=bulk-cancel&status=queued")
    page.click("#bulk-cancel")
    page.wait_for_url(re.compile(r"/bulk/"))
    page.wait_for_function(
        "() => document.querySelector('#bulk-status').innerText.includes('done')")
    assert "4 runs cancelled" in page.locator("#bulk-status").inner_text()
    assert {api.get(f"/v1/runs/{i}").json()["status"] for i in ids} == {"cancelled"}


def test_overview_and_other_pages(page: Any, engine: EngineProcess, api: httpx.Client,
                                  runs: dict[str, list[str]]) -> None:
    page.goto(f"{engine.url}/")
    page.wait_for_selector("#chart-throughput canvas")
    assert page.locator(".plot canvas").count() == 4
    assert int(page.locator('[data-stat="failed"]').inner_text()) >= len(runs["bad"])
    assert "http" in page.locator("table.grid").inner_text()
    _shot(page, "overview")

    page.goto(f"{engine.url}/queues")
    text = page.locator("#queue-table").inner_text()
    assert "slow" in text and "http" in text
    _shot(page, "queues")

    for path, expect in (("/events", "No events"), ("/apps", "No apps yet"),
                         ("/crons", "No function has a cron trigger")):
        page.goto(f"{engine.url}{path}")
        assert expect in page.locator("main").inner_text(), path
    assert api.get("/static/uplot.min.js").status_code == 200
    assert api.get("/static/..%2Fdashboard").status_code == 404


def test_csrf__post_without_or_with_wrong_token_is_refused(
        page: Any, engine: EngineProcess, api: httpx.Client, target: Target) -> None:
    run_id = _task(api, f"{target.url}/later", delay=3600)
    page.goto(f"{engine.url}/runs/{run_id}")  # gets a session cookie
    request = page.context.request
    missing = request.post(f"{engine.url}/runs/{run_id}/cancel", form={})
    wrong = request.post(f"{engine.url}/runs/{run_id}/cancel", form={"csrf": "not-the-token"})
    assert missing.status == 403 and wrong.status == 403
    assert "CSRF" in wrong.text()
    # Without the session cookie at all (a cross-site form post), also refused.
    assert httpx.post(f"{engine.url}/runs/{run_id}/cancel",
                      data={"csrf": "x"}).status_code == 403
    assert api.get(f"/v1/runs/{run_id}").json()["status"] == "queued"
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    ok = request.post(f"{engine.url}/runs/{run_id}/cancel", form={"csrf": token},
                      max_redirects=0)
    assert ok.status == 303
    assert api.get(f"/v1/runs/{run_id}").json()["status"] == "cancelled"


# -- serve mode: login required ----------------------------------------------------------------

@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    from offload.security.passwords import hash_password

    env = {"OFFLOAD_DASHBOARD_PASSWORD_HASH": hash_password(PASSWORD, n=2**14),
           "OFFLOAD_API_KEYS": ADMIN_KEY}
    with EngineProcess(tmp_path_factory.mktemp("dash-serve"), mode="serve", env=env) as e:
        yield e


def test_login__required_then_logout(page: Any, served: EngineProcess) -> None:
    page.goto(f"{served.url}/failed")
    page.wait_for_url(re.compile(r"/login\?next="))
    assert page.locator(".banner-dev").count() == 0
    _shot(page, "login")
    assert httpx.get(f"{served.url}/overview.json").status_code == 401

    page.fill("#secret", "wrong password")
    page.click("button[type=submit]")
    assert "Wrong password" in page.locator(".error").inner_text()

    page.fill("#secret", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/failed$"))
    assert "signed in (password)" in page.locator(".who").inner_text()
    cookie = next(c for c in page.context.cookies() if c["name"] == "offload_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] in ("Lax", "Strict")

    page.click("#logout")
    page.wait_for_url(re.compile(r"/login$"))
    page.goto(f"{served.url}/")
    page.wait_for_url(re.compile(r"/login"))


def test_login__with_admin_api_key(page: Any, served: EngineProcess) -> None:
    page.goto(f"{served.url}/queues")
    page.fill("#secret", ADMIN_KEY)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/queues$"))
    assert "signed in (admin key)" in page.locator(".who").inner_text()


def test_login__form_without_csrf_is_refused(served: EngineProcess) -> None:
    r = httpx.post(f"{served.url}/login", data={"secret": PASSWORD})
    assert r.status_code == 403
    assert "offload_session=" not in r.headers.get("set-cookie", "") or \
        "signed in" not in r.text


def test_actions__need_login_even_with_a_valid_csrf_token(page: Any,
                                                          served: EngineProcess) -> None:
    page.goto(f"{served.url}/login")
    token = page.locator("input[name=csrf]").get_attribute("value")
    r = page.context.request.post(f"{served.url}/runs/bulk",
                                  form={"csrf": token, "action": "cancel"})
    assert r.status == 403 and "Login required" in r.text()

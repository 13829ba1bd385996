"""The Webhooks pages in headless Chromium against a real ``offload dev`` process.

A GitHub webhook forwards to a real target: a delivery signed per GitHub's scheme
and a refused one show up on the webhook's page with the event and the runs each
started; the "Send test delivery" button goes through the real receive path. No
secret (webhook or stored) ever appears on a page.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.test_dashboard import ARTIFACTS, browser, page  # noqa: F401 - fixtures
from tests.support.engine import EngineProcess
from tests.support.target import Target

pytestmark = pytest.mark.browser

GH_SECRET = "gh-browser-secret-5b1f0c"  # noqa: S105
STORED_SECRET = "sk_test_value_never_shown_9d2e"  # noqa: S105


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    t = Target().start()
    yield t
    t.stop()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    with EngineProcess(tmp_path_factory.mktemp("dash-webhooks")) as e:
        yield e


def _github(body: bytes, delivery: str, secret: str = GH_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "x-github-event": "issues",
            "x-github-delivery": delivery, "x-hub-signature-256": f"sha256={digest}"}


def test_webhook_page__deliveries_refusals_runs_and_test_button(
        page: Any, engine: EngineProcess, target: Target) -> None:  # noqa: F811
    api = httpx.Client(base_url=engine.url, timeout=30)
    assert api.put("/v1/secrets/APP_TOKEN", json={"value": STORED_SECRET}).status_code == 201
    created = api.post("/v1/webhooks", json={
        "name": "github-issues", "verify": {"kind": "github", "secret": GH_SECRET},
        "forward": {"url": f"{target.url}/hooks/github", "retries": 0,
                    "headers": {"Authorization": "Bearer {{ secrets.APP_TOKEN }}"}}})
    assert created.status_code == 201, created.text
    hook = created.json()
    body = json.dumps({"action": "opened", "issue": {"number": 7}}).encode()
    ok = api.post(hook["url"], content=body, headers=_github(body, "delivery-browser-1"))
    assert ok.status_code == 200, ok.text
    bad = api.post(hook["url"], content=body,
                   headers=_github(body, "delivery-browser-2", secret="wrong"))
    assert bad.status_code == 401
    target.wait_for(lambda: target.at("/hooks/github"))
    assert target.at("/hooks/github")[0].headers["authorization"] == f"Bearer {STORED_SECRET}"

    page.goto(f"{engine.url}/webhooks")
    page.click(f"tr[data-webhook-id='{hook['id']}'] a")
    page.wait_for_selector("#deliveries")
    assert page.text_content("#webhook-kind").strip().startswith("github")
    row = page.locator("tr[data-delivery-id='delivery-browser-1']")
    assert "github/issues" in row.inner_text()
    assert row.locator("a.run-link").count() == 1  # the forward task
    assert "X-Hub-Signature-256 does not match" in page.text_content("#refusals")

    page.click("#send-test")
    page.wait_for_selector("#sent")
    assert "accepted" in page.text_content("#sent")
    assert page.locator("#deliveries tr[data-delivery-id^='test_']").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(Path(ARTIFACTS) / "webhook.png"), full_page=True)

    run_id = row.locator("a.run-link").first.get_attribute("data-run-id")
    # The forward run carries the delivery id as its correlation id: searchable, shown.
    page.goto(f"{engine.url}/runs?q=delivery-browser-1")
    assert page.locator(f"a[href='/runs/{run_id}']").count() >= 1
    page.goto(f"{engine.url}/runs/{run_id}")
    assert "delivery-browser-1" in page.content()
    page.goto(f"{engine.url}/secrets")
    assert page.locator("tr[data-secret='APP_TOKEN']").count() == 1
    for path in ("/webhooks", f"/webhooks/{hook['id']}", f"/runs/{run_id}", "/secrets"):
        page.goto(f"{engine.url}{path}")
        html = page.content()
        assert GH_SECRET not in html and STORED_SECRET not in html, path
    assert "{{ secrets.APP_TOKEN }}" in page.content() or "[redacted]" in page.content()

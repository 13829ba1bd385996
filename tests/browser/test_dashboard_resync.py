"""The dashboard's Resync button syncs an app again, in headless Chromium.

A real engine (``offload dev``) and a real app written with the official Python SDK
(``tests/integration/apps/lifecycle_app.py``). Clicking Resync must sync the app
(``synced_at`` moves, the page says so); with the app gone, it must fail visibly
with the app's sync error shown, and the earlier sync kept.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.test_dashboard import browser, page  # noqa: F401 - fixtures
from tests.support.engine import EngineProcess, free_port
from tests.support.poll import answers, eventually

pytestmark = pytest.mark.browser

APP_SCRIPT = Path(__file__).resolve().parents[1] / "integration" / "apps" / "lifecycle_app.py"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    with EngineProcess(tmp_path_factory.mktemp("dash-resync")) as e:
        yield e


@pytest.fixture
def app(engine: EngineProcess, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
    env["INNGEST_DEV"] = engine.url
    log = (tmp_path / "app.log").open("ab")
    proc = subprocess.Popen([sys.executable, str(APP_SCRIPT), "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    eventually(lambda: answers(f"{url}/counts"), timeout=20, what="the app")
    synced = httpx.post(f"{engine.url}/v1/apps", json={"url": f"{url}/api/inngest"},
                        timeout=30)
    assert synced.status_code == 200, synced.text
    yield proc
    proc.kill()
    proc.wait()


def _app(engine: EngineProcess) -> dict[str, Any]:
    body = httpx.get(f"{engine.url}/v1/apps/lcapp", timeout=30)
    assert body.status_code == 200, body.text
    return dict(body.json())


def test_resync_button__syncs_the_app_again(page: Any, engine: EngineProcess,  # noqa: F811
                                            app: subprocess.Popen[bytes]) -> None:
    before = _app(engine)["synced_at"]
    page.goto(f"{engine.url}/apps")
    section = page.locator('section[data-app-id="lcapp"]')
    section.get_by_role("button", name="Resync").click()
    page.wait_for_url(f"{engine.url}/apps?notice=resync_done")
    assert "App synced again." in page.content()
    after = _app(engine)
    assert after["synced_at"] > before and after["sync_error"] is None
    assert page.locator('section[data-app-id="lcapp"] [role="alert"]').count() == 0


def test_resync_button__shows_why_it_failed(page: Any, engine: EngineProcess,  # noqa: F811
                                            app: subprocess.Popen[bytes]) -> None:
    before = _app(engine)["synced_at"]
    app.kill()
    app.wait()
    page.goto(f"{engine.url}/apps")
    page.locator('section[data-app-id="lcapp"]').get_by_role("button", name="Resync").click()
    page.wait_for_url(f"{engine.url}/apps?notice=resync_failed")
    alert = page.locator('section[data-app-id="lcapp"] [role="alert"]')
    assert "The last sync failed." in alert.inner_text()
    assert "cannot reach the app" in alert.inner_text()
    stored = _app(engine)
    assert "cannot reach the app" in stored["sync_error"]
    assert stored["synced_at"] == before

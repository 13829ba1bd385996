"""App sync parses each function's config once: a bad field is refused by name (400,
nothing stored); a good config is stored and served parsed (``/v1/functions``)."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from offload.app import create_app
from offload.config import from_env

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

URL = "http://app.test/api/inngest"
BODY: dict[str, Any] = {
    "appName": "app", "url": URL, "sdk": "js:v3.54.0", "deployType": "ping",
    "functions": [{
        "id": "app-fn", "name": "fn", "triggers": [{"event": "a/b"}, {"cron": "0 3 * * *"}],
        "steps": {"step": {"id": "step", "name": "step",
                           "runtime": {"type": "http", "url": f"{URL}?fnId=app-fn&stepId=step"},
                           "retries": {"attempts": 30}}},
        "throttle": {"limit": 5, "period": "1m"},
    }],
}


@pytest.fixture
def dev(store_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = from_env({}, mode="dev", insecure=True, data_dir=tmp_path / "dev",
                        database_url=store_url)
    with TestClient(create_app(settings, run_scheduler=False),
                    raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize(("section", "value", "error"), [
    ("throttle", {"limit": 5, "period": "8d"},
     "functions[0].throttle.period: must be at most 1w"),
    ("concurrency", [{"limit": 1, "key": "event.data.("}], "functions[0].concurrency[0].key"),
    ("timeouts", {"finish": "soon"}, "functions[0].timeouts.finish"),
])
def test_sync__a_bad_field_is_refused_by_name_and_nothing_is_stored(
        dev: TestClient, section: str, value: Any, error: str) -> None:
    body = copy.deepcopy(BODY)
    body["functions"][0][section] = value
    answer = dev.post("/fn/register", json=body)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(error)
    assert dev.get("/v1/functions").json()["data"] == []


def test_sync__the_stored_function_is_served_parsed(dev: TestClient) -> None:
    assert dev.post("/fn/register", json=BODY).json()["ok"] is True
    fn = dev.get("/v1/functions/app-fn").json()
    assert fn["retries"] == 20  # 30 asked, capped
    assert fn["config"]["steps"]["step"]["retries"] == {"attempts": 30}  # raw kept as sent
    assert [c["cron"] for c in fn["crons"]] == ["0 3 * * *"]


def test_sync__the_dashboard_shows_the_parsed_triggers_retries_and_crons(
        dev: TestClient) -> None:
    assert dev.post("/fn/register", json=BODY).json()["ok"] is True
    apps = dev.get("/apps")
    assert apps.status_code == 200
    assert "event <code>a/b</code>" in apps.text and "cron <code>0 3 * * *</code>" in apps.text
    assert '<td class="num">20</td>' in apps.text
    page = dev.get("/functions/app-fn")
    assert page.status_code == 200 and "<dt>Retries</dt><dd>20</dd>" in page.text
    crons = dev.get("/crons")
    assert crons.status_code == 200 and "app-fn" in crons.text and "0 3 * * *" in crons.text

"""Targets the SSRF guard would refuse at call time are refused at submission (422).

Before, ``http://2130706433/``, ``http://0/``, ``http://127.1/`` and
``http://017700000001/`` got a 202 and failed later at the call. The reason given
now is the guard's own (``… resolves to 127.0.0.1: refused to connect to …``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from offload.app import create_app
from offload.config import from_env
from tests.fuzz.test_tasks_input import assert_problem

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

REFUSED = {
    "http://2130706433/": "2130706433 resolves to 127.0.0.1: refused to connect to "
                          "127.0.0.1: loopback address",
    "http://0/": "0 resolves to 0.0.0.0: refused to connect to 0.0.0.0: unspecified address",
    "http://127.1/": "127.1 resolves to 127.0.0.1: refused to connect to 127.0.0.1: "
                     "loopback address",
    "http://017700000001/x": "017700000001 resolves to 127.0.0.1: refused to connect to "
                             "127.0.0.1: loopback address",
    "http://0x7f.0.0.1:8080/": "0x7f.0.0.1 resolves to 127.0.0.1: refused to connect to "
                               "127.0.0.1: loopback address",
    "http://0xa9fea9fe/latest/meta-data": "0xa9fea9fe resolves to 169.254.169.254: refused "
                                          "to connect to 169.254.169.254: link-local address "
                                          "(includes cloud metadata endpoints)",
    "http://127.0.0.1/": "refused to connect to 127.0.0.1: loopback address",
    "http://[::ffff:7f00:1]/": "refused to connect to ::ffff:7f00:1: loopback address",
    "http://localhost:9/": "localhost resolves to 127.0.0.1: refused to connect to "
                           "127.0.0.1: loopback address",
}


def client_for(mode: str, store_url: str, tmp_path: Path) -> TestClient:
    settings = from_env({}, mode=mode, insecure=True, data_dir=tmp_path / mode,
                        database_url=store_url)
    return TestClient(create_app(settings, run_scheduler=False),
                      raise_server_exceptions=False)


@pytest.fixture
def serve(store_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with client_for("serve", store_url, tmp_path) as client:
        yield client


def test_refused_targets_are_422_with_the_guards_reason(serve: TestClient) -> None:
    for url, reason in REFUSED.items():
        body = assert_problem(serve.post("/v1/tasks", json={"url": url}), 422, "body.url")
        assert body["errors"][0]["code"] == "address_refused"
        assert body["errors"][0]["message"] == reason, url
    assert serve.get("/v1/runs").json()["data"] == []


def test_callbacks_and_batches_name_the_field(serve: TestClient) -> None:
    ok = "http://93.184.215.14/hook"  # a public address: checked again at call time only
    assert_problem(serve.post("/v1/tasks", json={"url": ok, "callback_url": "http://0/"}),
                   422, "body.callback_url")
    response = serve.post("/v1/tasks/batch", json={"tasks": [
        {"url": ok}, {"url": ok, "failure_callback_url": "http://127.1/"}]})
    assert_problem(response, 422, "body.tasks[1].failure_callback_url")
    assert serve.get("/v1/runs").json()["data"] == []
    assert serve.post("/v1/tasks", json={"url": ok, "delay": 3600}).status_code == 202
    assert serve.post("/v1/tasks", json={"url": "http://134744072/", "delay": 3600}
                      ).status_code == 202  # 8.8.8.8 in numeric form is public


def test_dev_mode_allows_loopback_in_any_form(store_url: str, tmp_path: Path) -> None:
    with client_for("dev", store_url, tmp_path) as dev:
        for url in ("http://127.1:9/", "http://2130706433:9/", "http://localhost:9/"):
            response = dev.post("/v1/tasks", json={"url": url, "delay": 3600})
            assert response.status_code == 202, response.text
        assert_problem(dev.post("/v1/tasks", json={"url": "http://167772161/"}), 422,
                       "body.url")  # 10.0.0.1: private, refused in dev too

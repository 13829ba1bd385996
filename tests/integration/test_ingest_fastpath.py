"""The ingest fast path answers exactly what the FastAPI routes answer.

Every request below goes to `offload serve` twice: as is (taken by the fast path when it
qualifies) and with a query string, which the fast path never takes, so FastAPI's route
answers it. Status, content type and body (ids and times masked) must match, and the
runs and events both stored must look the same.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.support.engine import EngineProcess

API_KEY = "ofk_admin_fastpath0123456789ab"
EVENT_KEY = "evkey-fastpath-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
JSON = {"Content-Type": "application/json"}
_MASKS = [(re.compile(rb"[0-9A-HJKMNP-TV-Z]{26}"), b"<id>"),
          (re.compile(rb"\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:\d\d)"), b"<time>")]


@pytest.fixture(scope="module")
def engine(module_store_url: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[EngineProcess]:
    proc = EngineProcess(tmp_path_factory.mktemp("engine"), database_url=module_store_url,
                         mode="serve", env={"OFFLOAD_API_KEYS": API_KEY,
                                            "OFFLOAD_EVENT_KEYS": EVENT_KEY,
                                            "OFFLOAD_MAX_BODY_BYTES": "20000"})
    proc.start(timeout=60)
    yield proc
    proc.kill()


def _mask(body: bytes) -> bytes:
    for pattern, replacement in _MASKS:
        body = pattern.sub(replacement, body)
    return body


def _task(**extra: Any) -> dict[str, Any]:
    return {"url": "https://example.com/hook", "delay": 3600, **extra}


CASES: list[tuple[str, str, dict[str, str], bytes]] = [
    ("valid", "/v1/tasks", {**AUTH, **JSON}, orjson.dumps(_task(body={"n": 1}))),
    ("flow", "/v1/tasks", {**AUTH, **JSON},
     orjson.dumps(_task(concurrency=2, priority=5, start_timeout=60))),
    ("plus-json", "/v1/tasks", {**AUTH, "Content-Type": "application/merge-patch+json"},
     orjson.dumps(_task())),
    ("charset", "/v1/tasks", {**AUTH, "Content-Type": "application/json; charset=utf-8"},
     orjson.dumps(_task())),
    ("bad-scheme", "/v1/tasks", {**AUTH, **JSON}, orjson.dumps(_task(url="ftp://x/y"))),
    ("unknown-field", "/v1/tasks", {**AUTH, **JSON}, orjson.dumps(_task(nope=1))),
    ("missing-url", "/v1/tasks", {**AUTH, **JSON}, b'{"delay": 1}'),
    ("bad-json", "/v1/tasks", {**AUTH, **JSON}, b'{"url": '),
    ("nan", "/v1/tasks", {**AUTH, **JSON}, b'{"url": "https://example.com/", "delay": NaN}'),
    ("not-object", "/v1/tasks", {**AUTH, **JSON}, b"[1, 2]"),
    ("text-plain", "/v1/tasks", {**AUTH, "Content-Type": "text/plain"},
     orjson.dumps(_task())),
    ("no-type", "/v1/tasks", AUTH, orjson.dumps(_task())),
    ("no-key", "/v1/tasks", JSON, orjson.dumps(_task())),
    ("wrong-key", "/v1/tasks", {"Authorization": "Bearer ofk_admin_wrong", **JSON},
     orjson.dumps(_task())),
    ("too-large", "/v1/tasks", {**AUTH, **JSON}, orjson.dumps(_task(body="x" * 30000))),
    ("cookie", "/v1/tasks", {**AUTH, **JSON, "Cookie": "offload_session=not-a-session"},
     orjson.dumps(_task())),
    ("batch", "/v1/tasks/batch", {**AUTH, **JSON},
     orjson.dumps({"tasks": [_task(), _task(body="two")]})),
    ("batch-bad-task", "/v1/tasks/batch", {**AUTH, **JSON},
     orjson.dumps({"tasks": [_task(), _task(retries=99), _task(url="x")]})),
    ("batch-empty", "/v1/tasks/batch", {**AUTH, **JSON}, b'{"tasks": []}'),
    ("event", f"/e/{EVENT_KEY}", JSON, b'{"name": "fast/path", "data": {"n": 1}}'),
    ("events", f"/e/{EVENT_KEY}", {}, b'[{"name": "fast/a"}, {"name": "fast/b", "data": {}}]'),
    ("event-no-name", f"/e/{EVENT_KEY}", JSON, b'{"data": {}}'),
    ("event-bad-json", f"/e/{EVENT_KEY}", JSON, b"{nope"),
    ("event-wrong-key", "/e/not-a-key", JSON, b'{"name": "fast/x"}'),
    ("event-too-large", f"/e/{EVENT_KEY}", JSON,
     orjson.dumps({"name": "fast/big", "data": {"x": "y" * 30000}})),
]


@pytest.mark.parametrize(("name", "path", "headers", "body"), CASES, ids=[c[0] for c in CASES])
def test_fast_and_full_paths_answer_alike(engine: EngineProcess, name: str, path: str,
                                          headers: dict[str, str], body: bytes) -> None:
    with httpx.Client(base_url=engine.url, timeout=30) as http:
        fast = http.post(path, content=body, headers=headers)
        full = http.post(f"{path}?via=full", content=body, headers=headers)
    assert fast.status_code == full.status_code, (fast.text, full.text)
    assert fast.headers.get("content-type") == full.headers.get("content-type")
    assert _mask(fast.content) == _mask(full.content)


def test_idempotency_and_stored_runs_match(engine: EngineProcess) -> None:
    with httpx.Client(base_url=engine.url, timeout=30, headers=AUTH) as http:
        runs = []
        for suffix, key in (("", "fast-idem-a"), ("?via=full", "fast-idem-b")):
            task = _task(idempotency_key=key, body={"k": [1, "two"]},
                         headers={"X-Thing": "1"}, queue="fastpath", retries=1)
            first = http.post(f"/v1/tasks{suffix}", json=task)
            again = http.post(f"/v1/tasks{suffix}", json=task)
            assert (first.status_code, again.status_code) == (202, 200)
            assert again.json()["id"] == first.json()["id"]
            assert again.json()["outcome"] == "duplicate"
            runs.append(http.get(f"/v1/runs/{first.json()['id']}").json())
    fast, full = (_mask(orjson.dumps(r, option=orjson.OPT_SORT_KEYS)) for r in runs)
    assert fast.replace(b"fast-idem-a", b"<key>") == full.replace(b"fast-idem-b", b"<key>")

"""The client's pure parts: HTTP/1.1 answer framing and how a batch answer is settled."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from offload.client import _settle_batch
from offload.client_http import Endpoint, _read_response, backoff
from offload.errors import ClientError


async def _parse(raw: bytes, eof: bool = True) -> tuple[int, bytes, bool]:
    reader = asyncio.StreamReader()
    reader.feed_data(raw)
    if eof:
        reader.feed_eof()
    return await _read_response(reader)


async def test_content_length_keep_alive() -> None:
    raw = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
    assert await _parse(raw, eof=False) == (202, b"{}", True)


async def test_chunked_with_trailer() -> None:
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\n")
    assert await _parse(raw, eof=False) == (200, b"Wikipedia", True)


async def test_connection_close_and_http_1_0() -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx"
    assert await _parse(closing) == (200, b"x", False)
    old = b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\ny"
    assert await _parse(old) == (200, b"y", False)
    old_kept = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nz"
    assert await _parse(old_kept) == (200, b"z", True)


async def test_body_until_close_and_no_body_statuses() -> None:
    assert await _parse(b"HTTP/1.1 200 OK\r\n\r\nall of it") == (200, b"all of it", False)
    assert await _parse(b"HTTP/1.1 204 No Content\r\n\r\n", eof=False) == (204, b"", True)


async def test_truncated_answer_raises() -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        await _parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")


def test_endpoint_request_bytes_and_targets() -> None:
    ep = Endpoint("http://127.0.0.1:8288/base/", "ofk_key")
    assert ep.target("/v1/runs", {"status": "failed", "limit": 5}) == \
        "/base/v1/runs?status=failed&limit=5"
    data = ep.request_bytes("POST", "/base/v1/tasks", b"{}")
    assert data.startswith(b"POST /base/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1:8288\r\n")
    assert b"Authorization: Bearer ofk_key\r\n" in data and data.endswith(b"\r\n\r\n{}")
    assert b"Content-Length: 0\r\n" in ep.request_bytes("POST", "/x", None)
    assert b"Content-Length" not in ep.request_bytes("GET", "/x", None)
    assert Endpoint("https://example.com", None).host_header == "example.com"
    assert Endpoint("http://[::1]:9000", None).host_header == "[::1]:9000"
    with pytest.raises(ValueError):
        Endpoint("ftp://example.com", None)


def test_backoff_doubles_to_two_seconds() -> None:
    assert [backoff(n) for n in (1, 2, 3, 6, 9)] == [0.1, 0.2, 0.4, 2.0, 2.0]


class _Fut:
    def __init__(self) -> None:
        self.value: Any = None
        self.error: BaseException | None = None


def _settle(pending: list[tuple[dict[str, Any], _Fut]], status: int, body: Any
            ) -> list[tuple[dict[str, Any], _Fut]]:
    def resolve(fut: _Fut, value: Any) -> None:
        fut.value = value

    def reject(fut: _Fut, exc: BaseException) -> None:
        fut.error = exc

    return _settle_batch(pending, status, body, resolve, reject)  # type: ignore[arg-type]


def _pending(n: int) -> list[tuple[dict[str, Any], _Fut]]:
    return [({"url": f"https://example.com/{i}"}, _Fut()) for i in range(n)]


def test_batch_accepted_hands_each_task_its_answer() -> None:
    pending = _pending(3)
    rest = _settle(pending, 202, {"data": [{"id": "a"}, {"id": "b"}, {"id": "c"}]})
    assert rest == [] and [f.value["id"] for _, f in pending] == ["a", "b", "c"]


def test_invalid_tasks_fail_alone_and_the_rest_is_sent_again() -> None:
    pending = _pending(4)
    problem = {"status": 422, "code": "invalid_request", "errors": [
        {"field": "body.tasks[1].url", "code": "url_scheme", "message": "no"},
        {"field": "body.tasks[3].retries", "code": "too_big", "message": "no"},
        {"field": "body.tasks[1].headers", "code": "invalid", "message": "no"}]}
    rest = _settle(pending, 422, problem)
    assert [t["url"] for t, _ in rest] == ["https://example.com/0", "https://example.com/2"]
    error = pending[1][1].error
    assert isinstance(error, ClientError) and error.status == 422
    assert [e["field"] for e in error.body["errors"]] == ["body.url", "body.headers"]
    error3 = pending[3][1].error
    assert isinstance(error3, ClientError)
    assert [e["field"] for e in error3.body["errors"]] == ["body.retries"]
    assert pending[0][1].error is None and pending[0][1].value is None


@pytest.mark.parametrize(("status", "body"), [
    (422, {"errors": [{"field": "body.tasks", "code": "too_long", "message": "no"}]}),
    (422, {"errors": [{"field": "body.tasks[0].url", "code": "x", "message": "no"},
                      {"field": "body", "code": "unparseable", "message": "no"}]}),
    (401, {"code": "unauthorized"}),
    (503, "plain text"),
    (202, {"data": [{"id": "only one"}]}),
])
def test_other_answers_fail_the_whole_batch(status: int, body: Any) -> None:
    pending = _pending(2)
    assert _settle(pending, status, body) == []
    for _, fut in pending:
        assert isinstance(fut.error, ClientError) and fut.error.status == status

"""An incoming ``traceparent`` is continued on the calls offload makes for the run.

The executor's call to a durable function's app is made against a real HTTP server on
loopback that records the headers it got.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from offload.config import Settings
from offload.engine.executor import Executor
from offload.models import Function, Run, RunStatus
from offload.outbound.http import build_client
from offload.outbound.ssrf import AddressPolicy
from offload.outbound.tracing import parse_traceparent, trace_id, traceparent
from offload.protocol.function_config import load_function_config

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{TRACE}-b7ad6b7169203331-00"
NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def app_server() -> Iterator[tuple[int, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    class App(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            self.rfile.read(int(self.headers.get("content-length", "0")))
            seen.append({k.lower(): v for k, v in self.headers.items()})
            body = b'"done"'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), App)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], seen
    server.shutdown()


def _run(state: dict[str, Any]) -> Run:
    return Run(id="01RUNTRACE", function_id="app-fn", status=RunStatus.RUNNING, attempt=0,
               created_at=NOW, updated_at=NOW, state=state, steps=[])


async def test_app_call_continues_the_stored_trace_or_derives_one(
        app_server: tuple[int, list[dict[str, str]]]) -> None:
    port, seen = app_server
    client = build_client(policy=AddressPolicy(allow_loopback=True))
    executor = Executor(None, client, Settings(), runs=None)  # type: ignore[arg-type]
    config = {"steps": {"step": {"runtime": {
        "url": f"http://127.0.0.1:{port}/api/inngest?fnId=app-fn"}}}}
    fn = Function(id="app-fn", app_id="app", name="fn", created_at=NOW, updated_at=NOW,
                  config=config, spec=load_function_config(config))
    try:
        await executor._call(fn, _run({"traceparent": PARENT}), [], None, attempt=0)
        await executor._call(fn, _run({}), [], None, attempt=0)
    finally:
        await client.aclose()
    continued, own = (h["traceparent"].split("-") for h in seen)
    assert continued[1] == TRACE and continued[2] != "b7ad6b7169203331"
    assert continued[3] == "00"  # the caller's sampling decision is kept
    assert own[1] == trace_id("01RUNTRACE") and own[3] == "01"


@pytest.mark.parametrize("bad", [
    None, "", "garbage", "00-" + "0" * 32 + "-b7ad6b7169203331-01",
    f"00-{TRACE}-" + "0" * 16 + "-01", f"ff-{TRACE}-b7ad6b7169203331-01",
    f"00-{TRACE}-b7ad6b7169203331-01-extra",
])
def test_invalid_incoming_traceparent_is_ignored(bad: str | None) -> None:
    assert parse_traceparent(bad) is None
    assert traceparent("r", bad).split("-")[1] == trace_id("r")


def test_valid_incoming_traceparent_is_normalised() -> None:
    assert parse_traceparent(PARENT.upper().replace("00-", "00-", 1)) == PARENT
    assert parse_traceparent(f"01-{TRACE}-b7ad6b7169203331-01-more") == \
        f"00-{TRACE}-b7ad6b7169203331-01"
    assert trace_id("r", PARENT) == TRACE

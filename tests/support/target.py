"""A real HTTP server on loopback that records what it receives and answers as scripted."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.engine import free_port
from tests.support.poll import eventually


@dataclass
class Received:
    path: str
    method: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Target:
    """Scripted answers per path: a list of (status, headers, body, delay_s) consumed in order;
    the last one repeats."""

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    scripts: dict[str, list[tuple[int, dict[str, str], bytes, float]]] = field(
        default_factory=dict)
    on_request: Callable[[Received], None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, path: str, *answers: tuple[int, dict[str, str], bytes, float]) -> None:
        self.scripts[path] = list(answers)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        rec = Received(request.url.path, request.method, dict(request.headers), body,
                       time.monotonic())
        self.received.append(rec)
        if self.on_request:
            self.on_request(rec)
        answers = self.scripts.get(request.url.path) or [(200, {}, b"ok", 0.0)]
        status, headers, payload, delay = answers.pop(0) if len(answers) > 1 else answers[0]
        if delay:
            await asyncio.sleep(delay)
        return Response(payload, status_code=status, headers=headers)

    def start(self) -> Target:
        app = Starlette(routes=[Route("/{path:path}", self._handle,
                                      methods=["GET", "POST", "PUT", "PATCH", "DELETE"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error",
                                access_log=False, timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        eventually(lambda: self._server.started, timeout=10, interval=0.02,
                   what="the target server")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
        return eventually(predicate, timeout=timeout, what="the target")

"""An in-process stand-in for the outside world, plugged in as the outbound transport.

:class:`FakeApp` answers the engine's requests without a socket: calls to a durable
function run a Python function written against :class:`FakeCtx` (a tiny replaying
SDK: memoized steps return their recorded value, the first new step interrupts the
call with its opcode, exactly as the Inngest SDKs answer), and any other URL is an
HTTP-task target answered from a script. Every request is kept in ``requests``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from offload.outbound.http import OutboundResponse

APP_URL = "http://app.test/api/inngest"
_SDK_HEADERS = {"content-type": "application/json", "x-inngest-sdk": "fake:v0",
                "x-inngest-req-version": "2"}


class _Interrupt(Exception):  # noqa: N818 - control flow, as the SDKs do it
    def __init__(self, op: dict[str, Any]) -> None:
        super().__init__(op.get("op"))
        self.op = op


class StepError(Exception):
    """A step that failed for good, re-raised where the function awaits it."""

    def __init__(self, error: Mapping[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.name = str(error.get("name"))
        self.error = dict(error)


class FakeCtx:
    """What a fake function sees: its event, run id, attempt and step tools."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        self.event: dict[str, Any] = dict(body.get("event") or {})
        self.memos: dict[str, Any] = dict(body.get("steps") or {})
        ctx = body.get("ctx") or {}
        self.run_id = str(ctx.get("run_id"))
        self.attempt = int(ctx.get("attempt") or 0)

    def _memo(self, step_id: str) -> tuple[bool, Any]:
        if step_id not in self.memos:
            return False, None
        memo = self.memos[step_id]
        if isinstance(memo, dict) and "error" in memo:
            raise StepError(memo["error"])
        return True, memo.get("data") if isinstance(memo, dict) else memo

    def run(self, step_id: str, fn: Callable[[], Any]) -> Any:
        """``step.run``: the recorded output, or run ``fn`` and report it."""
        done, value = self._memo(step_id)
        if done:
            return value
        try:
            output = fn()
        except Exception as exc:  # noqa: BLE001 - reported to the engine like the SDKs do
            raise _Interrupt({"op": "StepError", "id": step_id, "name": step_id,
                              "error": {"name": type(exc).__name__, "message": str(exc)}}
                             ) from None
        raise _Interrupt({"op": "StepRun", "id": step_id, "name": step_id, "data": output})

    def sleep(self, step_id: str, duration: str) -> None:
        """``step.sleep`` for an Inngest duration (``"1h"``)."""
        done, _ = self._memo(step_id)
        if not done:
            raise _Interrupt({"op": "Sleep", "id": step_id, "name": duration})

    def invoke(self, step_id: str, function_id: str, data: dict[str, Any],
               timeout: str | None = None) -> Any:
        """``step.invoke``: the child's result, or :class:`StepError` with its error."""
        done, value = self._memo(step_id)
        if done:
            return value
        opts: dict[str, Any] = {"function_id": function_id, "payload": {"data": data}}
        if timeout:
            opts["timeout"] = timeout
        raise _Interrupt({"op": "InvokeFunction", "id": step_id, "name": step_id,
                          "opts": opts})


FakeFunction = Callable[[FakeCtx], Any]


@dataclass
class FakeApp:
    """Durable functions by id, and scripted HTTP targets by URL."""

    functions: dict[str, FakeFunction] = field(default_factory=dict)
    targets: dict[str, list[tuple[int, dict[str, str], bytes]]] = field(
        default_factory=lambda: defaultdict(list))
    requests: list[tuple[str, str, dict[str, Any] | bytes | None]] = field(default_factory=list)

    def function(self, fn_id: str) -> Callable[[FakeFunction], FakeFunction]:
        """Register a durable function under ``fn_id`` (decorator)."""
        def register(fn: FakeFunction) -> FakeFunction:
            self.functions[fn_id] = fn
            return fn
        return register

    def script(self, url: str, *answers: tuple[int, dict[str, str], bytes]) -> None:
        """Answers of an HTTP target, one per call; the last one repeats."""
        self.targets[url].extend(answers)

    def config(self, fn_id: str, *, triggers: list[dict[str, Any]] | None = None,
               retries: int = 3, **extra: Any) -> dict[str, Any]:
        """The function config an SDK would register for ``fn_id``."""
        return {"id": fn_id, "name": fn_id, "triggers": triggers or [], **extra,
                "steps": {"step": {"id": "step", "name": "step", "retries": {
                    "attempts": retries}, "runtime": {
                        "type": "http", "url": f"{APP_URL}?fnId={fn_id}&stepId=step"}}}}

    async def __call__(self, method: str, url: str, *, headers: Mapping[str, str],
                       content: bytes | None) -> OutboundResponse:
        if url.startswith(APP_URL):
            body = json.loads(content or b"{}")
            self.requests.append((method, url, body))
            fn_id = parse_qs(urlsplit(url).query).get("fnId", [""])[0]
            return self._call(self.functions[fn_id], body)
        self.requests.append((method, url, content))
        answers = self.targets.get(url.split("?")[0]) or [(404, {}, b"no such target")]
        status, extra, payload = answers.pop(0) if len(answers) > 1 else answers[0]
        return OutboundResponse(status=status, headers=dict(extra), body=payload,
                                truncated=False, elapsed_ms=1.0, redirects=0)

    @staticmethod
    def _call(fn: FakeFunction, body: Mapping[str, Any]) -> OutboundResponse:
        try:
            result = fn(FakeCtx(body))
        except _Interrupt as stop:
            return OutboundResponse(status=206, headers=dict(_SDK_HEADERS),
                                    body=json.dumps([stop.op]).encode(), truncated=False,
                                    elapsed_ms=1.0, redirects=0)
        return OutboundResponse(status=200, headers=dict(_SDK_HEADERS),
                                body=json.dumps(result).encode(), truncated=False,
                                elapsed_ms=1.0, redirects=0)

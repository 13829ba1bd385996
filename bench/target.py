"""The no-op target: answers 200 at once and records when each task arrived.

Raw ASGI (no framework) so the target costs as little CPU as possible.
``POST /hit`` with a JSON body ``{"k": <int>, ...}`` records ``time.time()`` for
``k``; ``GET /stats`` returns ``{"hits": n}``; ``GET /stats?arrivals=1`` adds the
arrival times; ``POST /reset`` clears everything.

Run: ``python bench/target.py --port 9000``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import orjson

_hits = 0
_arrivals: dict[int, float] = {}


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _hits
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    arrived = time.time()
    path = scope["path"]
    body = await _body(receive)
    if path == "/hit":
        _hits += 1
        if body[:1] == b"{":
            try:
                k = orjson.loads(body).get("k")
            except orjson.JSONDecodeError:
                k = None
            if isinstance(k, int):
                _arrivals[k] = arrived
        await _answer(send, 200, b'{"ok":true}')
    elif path == "/stats":
        out: dict[str, Any] = {"hits": _hits}
        if b"arrivals" in scope.get("query_string", b""):
            out["arrivals"] = _arrivals
        await _answer(send, 200, orjson.dumps(out, option=orjson.OPT_NON_STR_KEYS))
    elif path == "/reset":
        _hits = 0
        _arrivals.clear()
        await _answer(send, 200, b"{}")
    else:
        await _answer(send, 404, b"{}")


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                loop="auto", http="auto")


if __name__ == "__main__":
    main()

"""The baseline: a trivial Starlette POST handler that parses JSON and answers 202.

Served by uvicorn exactly as ``offload dev`` is (loop and http "auto", i.e.
uvloop + httptools, access log off), so offload/baseline ratios cancel out
machine noise and the cost of the load generator.

Run: ``python bench/baseline.py --port 9001``.
"""

from __future__ import annotations

import argparse
import uuid

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def create_task(request: Request) -> JSONResponse:
    task = await request.json()
    if not isinstance(task, dict) or "url" not in task:
        return JSONResponse({"error": "url required"}, status_code=422)
    return JSONResponse({"id": uuid.uuid4().hex, "status": "queued"}, status_code=202)


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/v1/tasks", create_task, methods=["POST"]),
                        Route("/healthz", healthz)])


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                loop="auto", http="auto")


if __name__ == "__main__":
    main()

"""The app bench/functions.py measures: FastAPI + the official inngest SDK, one 3-step function.

Run: ``INNGEST_DEV=<engine url> python bench/fn_app.py --port N``.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import inngest
import inngest.fast_api
import uvicorn
from fastapi import FastAPI

client = inngest.Inngest(app_id="bench", logger=logging.getLogger("bench"))


@client.create_function(fn_id="three-steps", trigger=inngest.TriggerEvent(event="bench/go"),
                        retries=0)
async def three_steps(ctx: inngest.Context) -> Any:
    async def one() -> int:
        return int(ctx.event.data.get("n", 0)) + 1

    a = await ctx.step.run("one", one)

    async def two() -> int:
        return a * 2

    b = await ctx.step.run("two", two)

    async def three() -> dict[str, int]:
        return {"a": a, "b": b}

    return await ctx.step.run("three", three)


app = FastAPI()
inngest.fast_api.serve(app, client, [three_steps])

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)

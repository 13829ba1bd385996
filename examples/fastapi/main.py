"""A FastAPI app whose durable workflow is written with the official ``inngest`` SDK.

Nothing here names offload: the SDK reads ``INNGEST_DEV`` (dev) or
``INNGEST_BASE_URL`` + ``INNGEST_SIGNING_KEY`` + ``INNGEST_EVENT_KEY`` (production)
from the environment. Run with::

    INNGEST_DEV=http://127.0.0.1:8288 uvicorn main:app --port 8000
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import inngest
import inngest.fast_api
from fastapi import FastAPI

client = inngest.Inngest(app_id="signup", logger=logging.getLogger("uvicorn"))


@client.create_function(
    fn_id="onboard-user",
    trigger=inngest.TriggerEvent(event="app/user.signed_up"),
    retries=5,
)
async def onboard_user(ctx: inngest.Context) -> dict[str, Any]:
    """Welcome a new user: each step's result is recorded once and replayed after."""
    user = ctx.event.data

    async def create_account() -> dict[str, Any]:
        return {"account_id": f"acct_{user['email'].split('@')[0]}"}

    async def send_welcome() -> str:
        return f"welcome mail queued for {user['email']}"

    account = await ctx.step.run("create-account", create_account)
    await ctx.step.sleep("settle", datetime.timedelta(seconds=1))
    mail = await ctx.step.run("send-welcome", send_welcome)
    return {"account": account, "mail": mail}


app = FastAPI()


@app.post("/signup", status_code=202)
async def signup(body: dict[str, Any]) -> dict[str, Any]:
    """Accept a signup and hand the slow work to offload."""
    ids = await client.send(inngest.Event(name="app/user.signed_up", data=body))
    return {"accepted": ids[0]}


inngest.fast_api.serve(app, client, [onboard_user])

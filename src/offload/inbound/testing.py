"""Sign a test delivery the way each provider would (the dashboard's "send test")."""

from __future__ import annotations

import secrets as _random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from offload.inbound import generic, github, stripe
from offload.outbound import webhooks


def signed_headers(kind: str, options: Mapping[str, Any], secret: str | None, body: bytes,
                   *, delivery_id: str, at: datetime | None = None) -> dict[str, str]:
    """Headers that make ``body`` a valid delivery of a ``kind`` webhook."""
    at = at or datetime.now(UTC)
    headers = {"content-type": "application/json", "user-agent": "offload-test-delivery"}
    key = secret or ""
    if kind == "stripe":
        stamp = int(at.timestamp())
        headers["stripe-signature"] = f"t={stamp},v1={stripe.signature(key, stamp, body)}"
    elif kind == "github":
        headers[github.HEADER] = github.signature(key, body)
        headers[github.DELIVERY_HEADER] = delivery_id
        headers[github.EVENT_HEADER] = "ping"
    elif kind == "standard":
        headers.update(webhooks.sign_headers(key, msg_id=delivery_id, body=body, timestamp=at))
    elif kind == "hmac":
        headers[str(options["header"]).lower()] = generic.hmac_signature(
            key, body, algorithm=str(options.get("algorithm") or "sha256"),
            encoding=str(options.get("encoding") or "hex"),
            prefix=str(options.get("prefix") or ""))
    elif kind == "token":
        name = str(options.get("header") or "authorization").lower()
        headers[name] = f"Bearer {key}" if name == "authorization" else key
    if kind in ("hmac", "token", "none") and options.get("id_header"):
        headers[str(options["id_header"]).lower()] = delivery_id
    return headers


def sample_body(kind: str, delivery_id: str) -> dict[str, Any]:
    """A small body shaped like the provider's (Stripe: an event object)."""
    if kind == "stripe":
        return {"id": delivery_id, "object": "event", "type": "offload.test",
                "data": {"object": {"test": True}}}
    if kind == "github":
        return {"zen": "Keep it logically awesome.", "hook_id": 0, "test": True}
    return {"type": "offload.test", "test": True, "nonce": _random.token_hex(4)}

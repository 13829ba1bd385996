"""Dispatch a delivery to its provider's verifier; pick its delivery id and audit headers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from offload.inbound import generic, github, standard, stripe
from offload.inbound.errors import Refused
from offload.security.redact import is_sensitive_header

KINDS = ("stripe", "github", "standard", "hmac", "token", "none")
"""Every ``verify.kind`` a webhook may have."""

_AUDIT_HEADERS = frozenset({
    "content-type", "user-agent", "traceparent", "stripe-signature", github.HEADER,
    github.DELIVERY_HEADER, github.EVENT_HEADER, "x-github-hook-id", standard.ID_HEADER,
    "webhook-timestamp", "webhook-signature",
})
"""Headers kept with an accepted delivery (signatures are not secrets; tokens are)."""

__all__ = ["KINDS", "Refused", "Verified", "audit_headers", "verify"]


@dataclass(frozen=True, slots=True)
class Verified:
    """An accepted delivery: the provider's delivery id (None when it sends none)."""

    delivery_id: str | None


def verify(kind: str, options: Mapping[str, Any], secrets: Sequence[str],
           headers: Mapping[str, str], body: bytes, *, now: float) -> Verified:
    """Verify one delivery; raise :class:`Refused` saying why not.

    ``headers`` must have lower-case names; ``now`` is Unix seconds.
    """
    if kind != "none" and not secrets:
        raise Refused("the webhook has no secret")
    if kind == "stripe":
        stripe.verify(secrets, headers, body, now=now,
                      tolerance_s=int(options.get("tolerance") or stripe.DEFAULT_TOLERANCE_S))
        return Verified(_body_id(body))
    if kind == "github":
        github.verify(secrets, headers, body)
        return Verified(headers.get(github.DELIVERY_HEADER) or None)
    if kind == "standard":
        standard.verify(secrets, headers, body)
        return Verified(headers.get(standard.ID_HEADER) or None)
    if kind == "hmac":
        generic.verify_hmac(secrets, headers, body, header=str(options["header"]),
                            algorithm=str(options.get("algorithm") or "sha256"),
                            encoding=str(options.get("encoding") or "hex"),
                            prefix=str(options.get("prefix") or ""))
    elif kind == "token":
        generic.verify_token(secrets, headers,
                             header=str(options.get("header") or "authorization"))
    elif kind != "none":
        raise Refused(f"unknown verification kind {kind!r}")
    id_header = options.get("id_header")
    return Verified(headers.get(str(id_header).lower()) or None if id_header else None)


def _body_id(body: bytes) -> str | None:
    """Stripe's delivery identity: the event object's ``id``."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    found = value.get("id") if isinstance(value, dict) else None
    return found if isinstance(found, str) and found else None


def audit_headers(kind: str, options: Mapping[str, Any],
                  headers: Mapping[str, str]) -> dict[str, str]:
    """The headers kept with a delivery: provider ids and signatures, never a token."""
    keep = set(_AUDIT_HEADERS)
    for name in ("header", "id_header"):
        if options.get(name):
            keep.add(str(options[name]).lower())
    keep.update(str(h).lower() for h in options.get("keep_headers") or ())
    if kind == "token":
        keep.discard(str(options.get("header") or "authorization").lower())
    return {k: v[:2048] for k, v in headers.items()
            if k in keep and (not is_sensitive_header(k) or k in _AUDIT_HEADERS
                              or (kind == "hmac" and k == str(options.get("header")).lower()))}

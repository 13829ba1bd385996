"""Stripe: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]``.

``v1`` is hex(HMAC-SHA256(the endpoint secret's bytes, ``"<t>." + raw body``)).
Any ``v1`` entry may match (Stripe lists several while a secret is rolled);
``v0`` entries are ignored. A timestamp further than ``tolerance`` seconds from
now is refused (Stripe's libraries default to 300 s).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

from offload.inbound.errors import Refused

HEADER = "stripe-signature"
DEFAULT_TOLERANCE_S = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex ``v1`` signature of ``body`` sent at ``timestamp``."""
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def parse_header(value: str) -> tuple[int, list[str]]:
    """The timestamp and the ``v1`` signatures of a ``Stripe-Signature`` value."""
    timestamp: int | None = None
    v1: list[str] = []
    for part in value.split(","):
        key, sep, item = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(item)
            except ValueError:
                raise Refused("Stripe-Signature has a malformed timestamp") from None
        elif key == "v1" and item:
            v1.append(item)
    if timestamp is None:
        raise Refused("Stripe-Signature has no timestamp")
    if not v1:
        raise Refused("Stripe-Signature has no v1 signature")
    return timestamp, v1


def verify(secrets: Sequence[str], headers: Mapping[str, str], body: bytes, *, now: float,
           tolerance_s: int = DEFAULT_TOLERANCE_S) -> None:
    """Return if a ``v1`` entry signs ``body`` with one of ``secrets`` and the time is fresh."""
    value = headers.get(HEADER)
    if not value:
        raise Refused("missing Stripe-Signature header")
    timestamp, given = parse_header(value)
    if abs(now - timestamp) > tolerance_s:
        raise Refused(f"Stripe-Signature timestamp is outside the {tolerance_s} s tolerance")
    for secret in secrets:
        expected = signature(secret, timestamp, body).encode()
        if any(hmac.compare_digest(expected, sig.encode("ascii", "replace")) for sig in given):
            return
    raise Refused("no Stripe v1 signature matches")

"""Standard Webhooks signing for HTTP-task calls and callbacks (wraps ``standardwebhooks``).

The signature is ``v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>``.
The library signs text, so bodies that are not UTF-8 are signed here over the raw
bytes with the same formula; receivers that verify raw bytes accept both.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import standardwebhooks

from offload.errors import SignatureError

__all__ = ["TOLERANCE", "generate_secret", "sign_headers", "verify"]

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
TOLERANCE = timedelta(minutes=5)  # fixed by the library, both directions


def generate_secret() -> str:
    """A new secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _webhook(secret: str) -> standardwebhooks.Webhook:
    try:
        return standardwebhooks.Webhook(secret)
    except Exception as err:  # bad base64, empty secret
        raise SignatureError("invalid webhook secret") from err


def _raw_secret(secret: str) -> bytes:
    text = secret.removeprefix(SECRET_PREFIX)
    return base64.b64decode(text + "==")


def _raw_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_raw_secret(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign_headers(secret: str, *, msg_id: str, body: bytes, timestamp: datetime) -> dict[str, str]:
    """The three Standard Webhooks headers for one delivery.

    ``msg_id`` must be stable across retries of the same logical delivery so the
    receiver can deduplicate; ``timestamp`` is the send time (aware; naive means UTC).
    """
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=UTC)
    at = timestamp.astimezone(UTC)  # the library replaces tzinfo instead of converting
    seconds = math.floor(at.timestamp())
    webhook = _webhook(secret)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        signature = _raw_signature(secret, msg_id, seconds, body)
    else:
        signature = webhook.sign(msg_id, at, text)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(seconds),
        "webhook-signature": signature,
    }


def verify(secret: str, headers: Mapping[str, str], body: bytes) -> None:
    """Raise :class:`SignatureError` unless ``headers`` sign ``body`` with ``secret``
    within :data:`TOLERANCE` of now. Any ``v1`` entry of the space-separated list may
    match (key rotation). Every failure, malformed input included, is a SignatureError.
    """
    webhook = _webhook(secret)
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        _verify_raw(secret, lowered, body)
        return
    try:
        webhook.verify(body, lowered, json_parse=False)
    except standardwebhooks.WebhookVerificationError as err:
        raise SignatureError(str(err)) from None
    except Exception:  # the library raises bare ValueError on malformed headers
        raise SignatureError("malformed signature headers") from None


def _verify_raw(secret: str, headers: Mapping[str, str], body: bytes) -> None:
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (msg_id and stamp and signatures):
        raise SignatureError("Missing required headers")
    try:
        seconds = int(stamp)
    except ValueError:
        raise SignatureError("Invalid Signature Headers") from None
    now = datetime.now(UTC).timestamp()
    if abs(now - seconds) > TOLERANCE.total_seconds():
        raise SignatureError("Message timestamp outside tolerance")
    expected = _raw_signature(secret, msg_id, seconds, body).split(",", 1)[1]
    try:
        expected_bytes = base64.b64decode(expected)
        for entry in signatures.split(" "):
            version, _, value = entry.partition(",")
            if version == "v1" and hmac.compare_digest(expected_bytes, base64.b64decode(value)):
                return
    except (binascii.Error, ValueError):
        raise SignatureError("malformed signature headers") from None
    raise SignatureError("No matching signature found")

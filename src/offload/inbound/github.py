"""GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>``.

There is no timestamp: the ``X-GitHub-Delivery`` id (the same on a redelivery)
is the replay guard, through delivery deduplication.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

from offload.inbound.errors import Refused

HEADER = "x-hub-signature-256"
DELIVERY_HEADER = "x-github-delivery"
EVENT_HEADER = "x-github-event"


def signature(secret: str, body: bytes) -> str:
    """The header value GitHub sends for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secrets: Sequence[str], headers: Mapping[str, str], body: bytes) -> None:
    """Return if ``X-Hub-Signature-256`` signs ``body`` with one of ``secrets``."""
    value = headers.get(HEADER)
    if not value:
        raise Refused("missing X-Hub-Signature-256 header")
    if not value.startswith("sha256="):
        raise Refused("X-Hub-Signature-256 does not start with sha256=")
    given = value.encode("ascii", "replace")
    for secret in secrets:
        if hmac.compare_digest(signature(secret, body).encode(), given):
            return
    raise Refused("X-Hub-Signature-256 does not match")

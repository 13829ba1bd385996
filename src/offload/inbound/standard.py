"""Standard Webhooks: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``.

The same scheme offload signs its own calls with, so this reuses
:func:`offload.outbound.webhooks.verify` (the ``standardwebhooks`` library, its
5-minute tolerance, any ``v1`` entry of the list may match).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from offload.errors import SignatureError
from offload.inbound.errors import Refused
from offload.outbound import webhooks

ID_HEADER = "webhook-id"
_REASONS = {
    "missing required headers": "missing webhook-id, webhook-timestamp or webhook-signature",
    "message timestamp too old": "webhook-timestamp is outside the 5 minute tolerance",
    "message timestamp too new": "webhook-timestamp is outside the 5 minute tolerance",
    "message timestamp outside tolerance":
        "webhook-timestamp is outside the 5 minute tolerance",
    "no matching signature found": "no webhook-signature entry matches",
    "invalid signature headers": "malformed webhook-timestamp",
}


def verify(secrets: Sequence[str], headers: Mapping[str, str], body: bytes) -> None:
    """Return if the Standard Webhooks headers sign ``body`` with one of ``secrets``."""
    reason = "no webhook secret"
    for secret in secrets:
        try:
            webhooks.verify(secret, headers, body)
        except SignatureError as exc:
            text = str(exc)
            reason = _REASONS.get(text.lower(), "webhook-signature does not verify")
            if reason != "no webhook-signature entry matches" and \
                    reason != "webhook-signature does not verify":
                break  # malformed or stale: another secret cannot help
        else:
            return
    raise Refused(reason)

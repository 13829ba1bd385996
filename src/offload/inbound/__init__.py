"""Inbound provider webhooks: signature verification per provider, as pure functions.

Each verifier takes the candidate secrets (current first, then a rotated-out one
still inside its overlap), the request headers (names lower-cased), the raw body
bytes and the current time, and either returns or raises :class:`Refused` with a
short reason that is safe to show (it never contains a secret or a signature).
"""

from offload.inbound.verify import KINDS, Refused, Verified, verify

__all__ = ["KINDS", "Refused", "Verified", "verify"]

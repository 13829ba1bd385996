"""Senders without a named scheme: an HMAC of the raw body, or a shared token.

HMAC: the sender names the header, the algorithm (sha256, sha1, sha512), the
encoding (hex, base64) and an optional prefix (``sha256=``). Token: the secret
itself in a header, or ``Authorization: Bearer <secret>``; the weakest option
(anyone who sees one request can replay it), compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence

from offload.inbound.errors import Refused

ALGORITHMS = ("sha256", "sha1", "sha512")
ENCODINGS = ("hex", "base64")


def hmac_signature(secret: str, body: bytes, *, algorithm: str = "sha256",
                   encoding: str = "hex", prefix: str = "") -> str:
    """The header value a generic HMAC sender puts on ``body``."""
    digest = hmac.new(secret.encode(), body, getattr(hashlib, algorithm)).digest()
    text = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
    return prefix + text


def verify_hmac(secrets: Sequence[str], headers: Mapping[str, str], body: bytes, *,
                header: str, algorithm: str = "sha256", encoding: str = "hex",
                prefix: str = "") -> None:
    """Return if ``header`` holds the HMAC of ``body`` under one of ``secrets``."""
    value = headers.get(header.lower())
    if not value:
        raise Refused(f"missing {header} header")
    given = value.strip().encode("ascii", "replace")
    for secret in secrets:
        expected = hmac_signature(secret, body, algorithm=algorithm, encoding=encoding,
                                  prefix=prefix).encode()
        # Hex digests are compared case-insensitively (senders differ).
        if encoding == "hex":
            expected, candidate = expected.lower(), given.lower()
        else:
            candidate = given
        if hmac.compare_digest(expected, candidate):
            return
    raise Refused(f"{header} does not match")


def verify_token(secrets: Sequence[str], headers: Mapping[str, str], *,
                 header: str = "authorization") -> None:
    """Return if ``header`` carries one of ``secrets`` (``Bearer`` form for Authorization)."""
    name = header.lower()
    value = headers.get(name)
    if not value:
        raise Refused(f"missing {header} header")
    if name == "authorization":
        scheme, _, rest = value.partition(" ")
        if scheme.lower() != "bearer":
            raise Refused("Authorization is not a Bearer token")
        value = rest
    given = value.strip().encode("utf-8", "replace")
    for secret in secrets:
        if hmac.compare_digest(secret.encode(), given):
            return
    raise Refused(f"{header} does not match")

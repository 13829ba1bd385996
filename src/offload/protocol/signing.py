"""Signing keys, request signatures and Bearer checks of the Inngest SDK protocol.

Two derivations of one key ``signkey-<env>-<hex>``:

* the HMAC key of ``X-Inngest-Signature`` is the UTF-8 *text* after the prefix;
* the Bearer token an app sends is ``sha256(bytes.fromhex(text after prefix))``
  in hex. The JS SDK keeps the ``signkey-<env>-`` prefix on it, the Python SDK
  sends the bare digest; :func:`bearer_matches` accepts both, and the plain key.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import re
import urllib.parse
from collections.abc import Sequence

from offload.errors import SignatureError, ValidationError
from offload.protocol.canonical import canonical_json

__all__ = [
    "bearer_matches",
    "hash_signing_key",
    "sign_request",
    "sign_response",
    "strip_key_prefix",
    "validate_signing_key",
    "verify_request_signature",
]

_PREFIX = re.compile(r"^signkey-\w+-")
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")
DEFAULT_MAX_AGE = datetime.timedelta(minutes=5)


def _split_prefix(key: str) -> tuple[str, str]:
    match = _PREFIX.match(key)
    prefix = match.group(0) if match else ""
    return prefix, key[len(prefix) :]


def strip_key_prefix(key: str) -> str:
    """Return ``key`` without its ``signkey-<env>-`` prefix (unchanged if it has none)."""
    return _split_prefix(key)[1]


def validate_signing_key(key: str) -> None:
    """Raise ``ValidationError`` unless the part after the prefix is non-empty, even-length hex.

    The Python SDK calls ``bytes.fromhex`` on it and crashes otherwise.
    """
    if not isinstance(key, str) or not key:
        raise ValidationError("signing_key", "must not be empty", "empty")
    rest = strip_key_prefix(key)
    if not _HEX.match(rest):
        raise ValidationError(
            "signing_key",
            "the part after 'signkey-<env>-' must be hexadecimal (an even number of 0-9a-f)",
            "not_hex",
        )


def hash_signing_key(key: str) -> str:
    """The Bearer form of a signing key: ``signkey-<env>-`` + hex(sha256(hex-decoded key)).

    Keys without a prefix hash to the bare digest, which is what the Python SDK sends.
    """
    validate_signing_key(key)
    prefix, rest = _split_prefix(key)
    return prefix + hashlib.sha256(bytes.fromhex(rest)).hexdigest()


def _hmac_hex(body: bytes, key: str, timestamp: str) -> str:
    mac = hmac.new(strip_key_prefix(key).encode("utf-8"), body, hashlib.sha256)
    mac.update(timestamp.encode("utf-8"))
    return mac.hexdigest()


def sign_request(body: bytes, key: str, now: datetime.datetime) -> str:
    """Build ``X-Inngest-Signature`` for ``body``: ``t=<unix seconds>&s=<hex hmac>``.

    ``body`` must be the exact bytes sent, and they must be canonical JSON
    (:func:`offload.protocol.canonical.canonical_json`): the SDKs re-canonicalise
    what they receive before they check the HMAC.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    t = str(int(now.timestamp()))
    return f"t={t}&s={_hmac_hex(body, key, t)}"


# Apps sign their responses the same way, over the raw response bytes.
sign_response = sign_request


def _parse_signature_header(header: str) -> tuple[int, str]:
    parsed = urllib.parse.parse_qs(header, keep_blank_values=True)
    t_values = parsed.get("t")
    s_values = parsed.get("s")
    if not t_values or not s_values or not s_values[0]:
        raise SignatureError("signature header is malformed: need t=<unix>&s=<hex>")
    try:
        t = int(t_values[0])
    except ValueError as err:
        raise SignatureError("signature header is malformed: t is not an integer") from err
    return t, s_values[0]


def verify_request_signature(
    body: bytes,
    header: str | None,
    keys: Sequence[str],
    now: datetime.datetime,
    max_age: datetime.timedelta = DEFAULT_MAX_AGE,
) -> None:
    """Check an ``X-Inngest-Signature`` header against any of ``keys`` (current, fallback).

    Used for responses signed by SDKs (HMAC over the raw response bytes) and for
    anything signed by :func:`sign_request`. The canonical JSON form of ``body`` is
    also accepted, as the SDKs accept it. Raises ``SignatureError`` when the header
    is missing or malformed, older (or further in the future) than ``max_age``, or
    matches no key.
    """
    if not header:
        raise SignatureError("signature header is missing")
    if not keys:
        raise SignatureError("no signing key configured to verify the signature")
    t, signature = _parse_signature_header(header)
    age = abs(now.timestamp() - t)
    if age > max_age.total_seconds():
        raise SignatureError("signature is stale")
    candidates = [body]
    canonical = _canonical_or_none(body)
    if canonical is not None and canonical != body:
        candidates.append(canonical)
    ok = False
    for key in keys:
        for candidate in candidates:
            expected = _hmac_hex(candidate, key, str(t))
            ok |= hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8"))
    if not ok:
        raise SignatureError("signature does not match")


def _canonical_or_none(body: bytes) -> bytes | None:
    if not body:
        return None
    try:
        return canonical_json(json.loads(body))
    except (ValueError, ValidationError):
        return None


def bearer_matches(authorization_header: str | None, keys: Sequence[str]) -> bool:
    """Whether ``Authorization: Bearer <token>`` carries any of ``keys``.

    The token may be the plain key, its prefixed hash (JS SDK) or the bare hash
    (Python SDK). Comparisons are constant-time. No keys, no header, or a
    non-Bearer header never match.
    """
    if not authorization_header or not keys:
        return False
    scheme, _, token = authorization_header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return False
    given = token.encode("utf-8")
    ok = False
    for key in keys:
        if not key:
            continue
        candidates = [key]
        try:
            hashed = hash_signing_key(key)
        except ValidationError:
            hashed = None
        if hashed is not None:
            candidates.append(hashed)
            candidates.append(strip_key_prefix(hashed))
        for candidate in candidates:
            ok |= hmac.compare_digest(candidate.encode("utf-8"), given)
    return ok

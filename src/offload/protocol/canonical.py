"""RFC 8785 (JCS) canonical JSON: the exact bytes offload sends to apps and signs."""

from __future__ import annotations

from typing import Any

import rfc8785

from offload.errors import ValidationError

__all__ = ["canonical_json"]

# I-JSON numbers are IEEE doubles; integers beyond this lose precision.
_MAX_SAFE_INT = 2**53 - 1


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` as RFC 8785 canonical JSON (UTF-8 bytes).

    Integers outside the double-safe range are emitted as doubles, exactly as the
    SDKs' own canonicalisers (Python ``jcs``, JS ``canonicalize``) do before they
    verify a signature; otherwise a signed body holding a big integer would never
    verify. Raises ``ValidationError("json", ...)`` for NaN, infinities, non-string
    keys or values that are not JSON.
    """
    try:
        return rfc8785.dumps(value)
    except rfc8785.IntegerDomainError:
        pass
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as err:
        raise ValidationError("json", f"cannot canonicalise: {err}", "not_json") from err
    try:
        return rfc8785.dumps(_doubles_for_big_ints(value))
    except (rfc8785.CanonicalizationError, TypeError, ValueError, OverflowError) as err:
        raise ValidationError("json", f"cannot canonicalise: {err}", "not_json") from err


def _doubles_for_big_ints(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value) if abs(value) > _MAX_SAFE_INT else value
    if isinstance(value, dict):
        return {k: _doubles_for_big_ints(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_doubles_for_big_ints(v) for v in value]
    return value

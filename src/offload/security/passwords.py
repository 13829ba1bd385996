"""Dashboard passwords: scrypt hashes in the form ``scrypt$n$r$p$salt$hash``.

``n``, ``r`` and ``p`` are decimal scrypt parameters; ``salt`` (16 bytes) and
``hash`` (32 bytes) are unpadded URL-safe base64. Defaults: n=2**15, r=8, p=1
(about 32 MiB and 50-100 ms per check, OWASP's scrypt floor). ``offload
dashboard hash-password`` prints one for ``OFFLOAD_DASHBOARD_PASSWORD_HASH``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["hash_password", "verify_password", "validate_hash"]

N, R, P = 2**15, 8, 1
_MAX_N = 2**20
_KEY_LEN = 32


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=length,
                          maxmem=128 * r * (n + p + 2) + 1024 * 1024)


def hash_password(password: str, *, n: int = N, r: int = R, p: int = P) -> str:
    """A new salted hash of ``password``."""
    if not password:
        raise ValueError("the password is empty")
    salt = secrets.token_bytes(16)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(_derive(password, salt, n, r, p, _KEY_LEN))}"


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes]:
    parts = stored.strip().split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("expected scrypt$n$r$p$salt$hash")
    n, r, p = (int(v) for v in parts[1:4])
    if n < 2 or n > _MAX_N or n & (n - 1) or not 0 < r <= 32 or not 0 < p <= 16:
        raise ValueError("scrypt parameters out of range")
    salt, digest = _unb64(parts[4]), _unb64(parts[5])
    if len(salt) < 8 or len(digest) < 16:
        raise ValueError("salt or hash too short")
    return n, r, p, salt, digest


def validate_hash(stored: str) -> None:
    """Raise ValueError unless ``stored`` is a well-formed hash."""
    _parse(stored)


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches ``stored``; False for a wrong password or a bad hash."""
    try:
        n, r, p, salt, digest = _parse(stored)
    except ValueError:
        return False
    candidate = _derive(password, salt, n, r, p, len(digest))
    return hmac.compare_digest(candidate, digest)

"""Stored secrets: encryption at rest and ``{{ secrets.NAME }}`` references.

Values are encrypted with AES-256-GCM (``cryptography``) under a key from settings
(``OFFLOAD_SECRETS_KEY`` or ``OFFLOAD_SECRETS_KEY_FILE``: 32 bytes as base64 or
hex); ``offload dev`` generates one into the data dir. The secret's name is the
associated data, so a ciphertext copied to another name does not decrypt. Stored
form: ``v1.<base64url(nonce ‖ ciphertext+tag)>``.

HTTP tasks (and webhook forwards) name secrets in header values and the URL query
as ``{{ secrets.NAME }}``; the reference is what is stored and shown, the value is
filled in only for the outbound call (:func:`resolve`).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from offload.errors import ConfigError, OffloadError

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
REFERENCE = re.compile(r"\{\{\s*secrets\.([A-Za-z_][A-Za-z0-9_]{0,63})\s*\}\}")
_ANY_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
_VERSION = "v1."
KEY_FILE = "secrets_key"

__all__ = ["KEY_FILE", "NAME_PATTERN", "REFERENCE", "SecretBox", "SecretNotFoundError", "Vault",
           "box_for", "check_url_references", "ensure_key", "load_key", "only_references",
           "references",
           "reference_problem", "resolve", "scrub"]


class SecretNotFoundError(OffloadError):
    """A task names a secret that is not stored (the attempt fails, not retried)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"secret {name!r} is not set (PUT /v1/secrets/{name})")
        self.name = name


class SecretBox:
    """Encrypts and decrypts secret values under one 256-bit key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigError("the secrets key must be 32 bytes (base64 or hex encoded)")
        self._aead = AESGCM(key)

    def encrypt(self, name: str, value: str) -> str:
        """The stored form of ``value`` (a fresh nonce each time)."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, value.encode(), name.encode())
        return _VERSION + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, name: str, stored: str) -> str:
        """The value of a stored secret; ConfigError if the key does not open it."""
        try:
            if not stored.startswith(_VERSION):
                raise ValueError("unknown format")
            raw = base64.urlsafe_b64decode(stored[len(_VERSION):])
            return self._aead.decrypt(raw[:12], raw[12:], name.encode()).decode()
        except (InvalidTag, ValueError, binascii.Error):
            raise ConfigError(f"secret {name!r} cannot be decrypted: the secrets key "
                              "(OFFLOAD_SECRETS_KEY) is not the one it was stored with") from None


def load_key(text: str) -> bytes:
    """The 32-byte key from its base64 (standard or URL-safe) or hex text."""
    text = text.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    try:
        key = base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "==")
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise ConfigError("OFFLOAD_SECRETS_KEY must be 32 bytes, base64 or hex encoded "
                          "(e.g. `python -c \"import os,base64;print(base64.b64encode("
                          "os.urandom(32)).decode())\"`)")
    return key


def ensure_key(data_dir: Path) -> str:
    """The dev key kept in ``<data_dir>/secrets_key``, created (mode 600) if missing."""
    path = data_dir / KEY_FILE
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    key = base64.b64encode(os.urandom(32)).decode()
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    return key


def references(texts: Iterable[str]) -> set[str]:
    """The secret names referenced in ``texts``."""
    found: set[str] = set()
    for text in texts:
        if "{{" in text:
            found.update(REFERENCE.findall(text))
    return found


def reference_problem(text: str) -> str | None:
    """Why a ``{{ … }}`` in ``text`` is not a valid secret reference, or None."""
    for match in _ANY_PLACEHOLDER.finditer(text):
        if not REFERENCE.fullmatch(match.group(0)):
            return (f"{match.group(0)[:80]!r} is not a secret reference; write "
                    "{{ secrets.NAME }} (letters, digits, underscore)")
    return None


def resolve(text: str, values: Mapping[str, str]) -> str:
    """``text`` with every ``{{ secrets.NAME }}`` replaced by its value.

    Raises :class:`SecretNotFoundError` for a name missing from ``values``.
    """
    if "{{" not in text:
        return text

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise SecretNotFoundError(name)
        return values[name]

    return REFERENCE.sub(fill, text)


_SCHEME_WORDS = re.compile(r"^[A-Za-z]{0,16} ?$")


def only_references(value: str) -> bool:
    """True when ``value`` is secret references and at most a scheme word ("Bearer "):
    safe to show, since it holds no credential itself."""
    if "{{" not in value:
        return False
    rest = REFERENCE.sub("", value)
    return rest != value and "{{" not in rest and bool(_SCHEME_WORDS.match(rest.strip() + " "))


def check_url_references(url: str) -> str:
    """``url`` with its secret references replaced by a placeholder, for URL checks.

    Raises ValueError if a ``{{ … }}`` is malformed or stands outside the query.
    """
    if "{{" not in url and "}}" not in url:
        return url
    problem = reference_problem(url)
    if problem is not None:
        raise ValueError(problem)
    head, _, _ = url.partition("?")
    if "{{" in head:
        raise ValueError("secret references are allowed only in the URL query")
    return REFERENCE.sub("secret", url)


class _SecretRows(Protocol):
    async def secret_get_many(self, *, names: list[str]) -> dict[str, str]: ...


def box_for(secrets_key: str | None, *, dev: bool, data_dir: Path) -> SecretBox | None:
    """The box for the configured key; in dev, the one kept in the data dir; else None."""
    if secrets_key:
        return SecretBox(load_key(secrets_key))
    if dev:
        return SecretBox(load_key(ensure_key(data_dir)))
    return None


class Vault:
    """Seals secrets for the store and opens the ones a call references."""

    def __init__(self, box: SecretBox | None, rows: _SecretRows) -> None:
        self.box = box
        self.rows = rows

    def _need_box(self) -> SecretBox:
        if self.box is None:
            raise ConfigError("no secrets key is configured: set OFFLOAD_SECRETS_KEY (or "
                              "OFFLOAD_SECRETS_KEY_FILE)")
        return self.box

    def seal(self, name: str, value: str) -> str:
        """The stored form of a value."""
        return self._need_box().encrypt(name, value)

    def open(self, name: str, stored: str) -> str:
        """The value of a stored form."""
        return self._need_box().decrypt(name, stored)

    async def values(self, names: Iterable[str]) -> dict[str, str]:
        """The values of the named secrets; SecretNotFoundError for a missing one."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        box = self._need_box()
        stored = await self.rows.secret_get_many(names=wanted)
        for name in wanted:
            if name not in stored:
                raise SecretNotFoundError(name)
        return {name: box.decrypt(name, stored[name]) for name in wanted}

    async def resolve_call(self, url: str, headers: Mapping[str, str]
                           ) -> tuple[str, dict[str, str], list[str]]:
        """The URL and headers with references filled in, and the values used.

        Values go into the URL query percent-encoded.
        """
        names = references([url, *headers.values()])
        if not names:
            return url, dict(headers), []
        values = await self.values(names)
        out_url = resolve(url, {k: quote(v, safe="") for k, v in values.items()})
        out_headers = {k: resolve(v, values) for k, v in headers.items()}
        return out_url, out_headers, list(values.values())


def scrub(value: Any, revealed: Iterable[str], *, min_length: int = 4) -> Any:
    """``value`` (JSON-able) with every revealed secret value replaced by ``[secret]``.

    Keeps a target that echoes a credential back from putting it into the stored run.
    """
    needles = [v for v in revealed if len(v) >= min_length]
    if not needles or value is None:
        return value
    text = orjson.dumps(value).decode()
    changed = False
    for needle in needles:
        for form in {needle, orjson.dumps(needle).decode()[1:-1], quote(needle, safe="")}:
            if form in text:
                text = text.replace(form, "[secret]")
                changed = True
    if not changed:
        return value
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # a needle spanning JSON syntax: drop the value whole
        return "[secret]"

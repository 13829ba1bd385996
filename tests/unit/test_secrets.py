"""Stored-secret encryption and ``{{ secrets.NAME }}`` references."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from offload.errors import ConfigError
from offload.security.secrets import (
    SecretBox,
    SecretNotFoundError,
    Vault,
    check_url_references,
    ensure_key,
    load_key,
    reference_problem,
    references,
    resolve,
    scrub,
)

KEY = os.urandom(32)


def test_box__round_trip_fresh_nonce_and_name_bound() -> None:
    box = SecretBox(KEY)
    a, b = box.encrypt("STRIPE", "sk_live_123"), box.encrypt("STRIPE", "sk_live_123")
    assert a != b and "sk_live_123" not in a
    assert box.decrypt("STRIPE", a) == "sk_live_123"
    with pytest.raises(ConfigError):  # moved to another name: the tag does not verify
        box.decrypt("OTHER", a)
    with pytest.raises(ConfigError, match="not the one it was stored with"):
        SecretBox(os.urandom(32)).decrypt("STRIPE", a)


def test_load_key__base64_urlsafe_or_hex_and_32_bytes_only() -> None:
    assert load_key(base64.b64encode(KEY).decode()) == KEY
    assert load_key(base64.urlsafe_b64encode(KEY).decode()) == KEY
    assert load_key(KEY.hex()) == KEY
    for bad in ("", "short", base64.b64encode(b"x" * 16).decode()):
        with pytest.raises(ConfigError):
            load_key(bad)


def test_ensure_key__created_once_private(tmp_path: Path) -> None:
    first = ensure_key(tmp_path)
    assert ensure_key(tmp_path) == first and len(load_key(first)) == 32
    assert (tmp_path / "secrets_key").stat().st_mode & 0o777 == 0o600


def test_references_and_resolve() -> None:
    text = "Bearer {{ secrets.API_KEY }} {{secrets.other_1}}"
    assert references([text, "plain"]) == {"API_KEY", "other_1"}
    assert resolve(text, {"API_KEY": "a", "other_1": "b"}) == "Bearer a b"
    with pytest.raises(SecretNotFoundError, match="MISSING"):
        resolve("{{ secrets.MISSING }}", {})
    assert reference_problem("{{ env.X }}") is not None
    assert reference_problem("{{ secrets.bad-name }}") is not None
    assert reference_problem("x {{ secrets.OK }}") is None


def test_url_references_only_in_query() -> None:
    assert check_url_references("https://a.example/x?k={{ secrets.K }}") == \
        "https://a.example/x?k=secret"
    with pytest.raises(ValueError, match="only in the URL query"):
        check_url_references("https://{{ secrets.K }}.example/")


async def test_vault__values_resolve_call_and_missing() -> None:
    box = SecretBox(KEY)

    class Rows:
        async def secret_get_many(self, *, names: list[str]) -> dict[str, str]:
            stored = {"K": box.encrypt("K", "v a/l&ue")}
            return {n: stored[n] for n in names if n in stored}

    vault = Vault(box, Rows())
    url, headers, revealed = await vault.resolve_call(
        "https://a.example/?key={{ secrets.K }}", {"Authorization": "Bearer {{ secrets.K }}"})
    assert url == "https://a.example/?key=v%20a%2Fl%26ue"
    assert headers == {"Authorization": "Bearer v a/l&ue"} and revealed == ["v a/l&ue"]
    with pytest.raises(SecretNotFoundError):
        await vault.values(["NOPE"])
    with pytest.raises(ConfigError, match="OFFLOAD_SECRETS_KEY"):
        await Vault(None, Rows()).values(["K"])


def test_scrub_replaces_echoed_values() -> None:
    value = {"body": {"echo": "token sk_live_abcdef", "q": "x=sk_live_abcdef"}, "n": 1}
    assert scrub(value, ["sk_live_abcdef"]) == {"body": {"echo": "token [secret]",
                                                         "q": "x=[secret]"}, "n": 1}
    assert scrub(value, []) is value

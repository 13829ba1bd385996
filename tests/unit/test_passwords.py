"""Dashboard password hashes: scrypt$n$r$p$salt$hash."""

from __future__ import annotations

import pytest

from offload.security.passwords import hash_password, validate_hash, verify_password


def test_hash_password__verifies_and_is_salted() -> None:
    first = hash_password("hunter2hunter2", n=2**12)
    second = hash_password("hunter2hunter2", n=2**12)
    assert first != second
    assert first.startswith("scrypt$4096$8$1$")
    assert verify_password("hunter2hunter2", first)
    assert not verify_password("hunter2hunter3", first)
    validate_hash(first)


@pytest.mark.parametrize("stored", [
    "", "bcrypt$x", "scrypt$3$8$1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
    "scrypt$16384$8$1$c2FsdA$aGFzaA", "scrypt$a$b$c$d$e",
    "scrypt$1073741824$8$1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA"])
def test_verify_password__malformed_hash_is_false_not_an_error(stored: str) -> None:
    assert verify_password("anything", stored) is False
    with pytest.raises(ValueError):
        validate_hash(stored)


def test_hash_password__refuses_empty() -> None:
    with pytest.raises(ValueError):
        hash_password("")


def test_cli_hash_password__prints_a_verifiable_hash() -> None:
    from click.testing import CliRunner

    from offload.cli import main

    result = CliRunner().invoke(main, ["dashboard", "hash-password", "--stdin"],
                                input="a long passphrase\n")
    assert result.exit_code == 0, result.output
    assert verify_password("a long passphrase", result.output.strip())
    short = CliRunner().invoke(main, ["dashboard", "hash-password", "--stdin"], input="short\n")
    assert short.exit_code != 0 and "at least 8" in short.output

"""RFC 8785 canonical JSON (offload.protocol.canonical)."""

from __future__ import annotations

import json
import math

import jcs  # the canonicaliser the Python SDK uses before verifying a signature
import pytest

from offload.errors import ValidationError
from offload.protocol.canonical import canonical_json


def test_sorts_keys_and_strips_whitespace() -> None:
    assert canonical_json({"b": 1, "a": [1, {"d": None, "c": True}]}) == (
        b'{"a":[1,{"c":true,"d":null}],"b":1}'
    )


def test_number_forms_follow_ecmascript() -> None:
    assert canonical_json([1.0, 2.5, 1e21, -0.0, 1.5e-7, 100]) == b"[1,2.5,1e+21,0,1.5e-7,100]"


def test_strings_are_utf8_not_escaped() -> None:
    assert canonical_json({"x": "é\u2028<\n"}) == '{"x":"é\u2028<\\n"}'.encode()


@pytest.mark.parametrize(
    "value",
    [
        {"big": 2**53 + 1},
        {"huge": -(2**63)},
        {"nested": [{"z": 1, "a": 2**70}], "t": (1, 2)},
        {"unicode": "日本", "emoji": "😀", "f": 0.1},
    ],
)
def test_matches_the_sdk_canonicaliser(value: object) -> None:
    # Whatever we send, the Python SDK parses and re-canonicalises with jcs; the
    # bytes must be identical or the HMAC fails.
    ours = canonical_json(value)
    assert jcs.canonicalize(json.loads(ours)) == ours


def test_big_integers_become_doubles() -> None:
    assert canonical_json(2**63) == b"9223372036854776000"
    assert canonical_json(2**53 - 1) == b"9007199254740991"


@pytest.mark.parametrize("value", [math.nan, math.inf, {1: "x"}, {"s": {1, 2}}, object()])
def test_rejects_non_json(value: object) -> None:
    with pytest.raises(ValidationError) as exc:
        canonical_json(value)
    assert exc.value.field == "json"

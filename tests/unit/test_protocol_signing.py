"""Signing keys, signatures and Bearer checks, verified against the Python SDK itself."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import pathlib
import sys
from types import ModuleType

import pytest
from inngest._internal import net, server_lib, transforms

from offload.errors import SignatureError, ValidationError
from offload.protocol.canonical import canonical_json
from offload.protocol.messages import build_call_request
from offload.protocol.signing import (
    bearer_matches,
    hash_signing_key,
    sign_request,
    sign_response,
    strip_key_prefix,
    validate_signing_key,
    verify_request_signature,
)

KEY = "signkey-test-" + "ab" * 32
FALLBACK = "signkey-prod-" + "0123456789abcdef" * 4
NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def _sdk_app() -> ModuleType:
    path = pathlib.Path(__file__).parent / "fixtures" / "sdk_app.py"
    if "sdk_app" in sys.modules:
        return sys.modules["sdk_app"]
    spec = importlib.util.spec_from_file_location("sdk_app", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["sdk_app"] = module
    spec.loader.exec_module(module)
    return module


# --- keys -------------------------------------------------------------------


def test_strip_key_prefix() -> None:
    assert strip_key_prefix("signkey-prod-abcd") == "abcd"
    assert strip_key_prefix("signkey-branch-00ff") == "00ff"
    assert strip_key_prefix("abcd") == "abcd"


def test_hash_signing_key_matches_sdk_digest() -> None:
    # The Python SDK sends the bare digest; the JS SDK keeps the prefix.
    digest = transforms.hash_signing_key(KEY)
    assert hash_signing_key(KEY) == "signkey-test-" + digest
    assert digest == hashlib.sha256(bytes.fromhex("ab" * 32)).hexdigest()
    assert hash_signing_key("ab" * 32) == digest


@pytest.mark.parametrize(
    "key", ["", "signkey-test-", "signkey-test-xyz", "signkey-test-abc", "not hex at all"]
)
def test_validate_signing_key_rejects_non_hex(key: str) -> None:
    with pytest.raises(ValidationError) as exc:
        validate_signing_key(key)
    assert exc.value.field == "signing_key"


def test_validate_signing_key_accepts_hex() -> None:
    validate_signing_key(KEY)
    validate_signing_key("signkey-branch-ABCDEF01")


# --- request signatures -----------------------------------------------------


def test_sign_request_format() -> None:
    sig = sign_request(b"{}", KEY, NOW)
    t, s = sig.split("&")
    assert t == f"t={int(NOW.timestamp())}"
    assert s.startswith("s=") and len(s) == 2 + 64


def test_sign_request_rejects_naive_time() -> None:
    with pytest.raises(ValueError):
        sign_request(b"{}", KEY, dt.datetime(2026, 1, 1))  # noqa: DTZ001


def test_signature_accepted_by_sdk_validation() -> None:
    body = canonical_json({"b": [1, 2], "a": {"z": "é"}})
    header = sign_request(body, KEY, NOW)
    result = net.validate_request_sig(
        body=body,
        headers={"x-inngest-signature": header},
        mode=server_lib.ServerKind.CLOUD,
        signing_key=KEY,
        signing_key_fallback=None,
    )
    assert result == KEY


def test_signature_with_fallback_key_accepted_by_sdk() -> None:
    body = canonical_json({"x": 1})
    header = sign_request(body, FALLBACK, NOW)
    result = net.validate_request_sig(
        body=body,
        headers={"x-inngest-signature": header},
        mode=server_lib.ServerKind.CLOUD,
        signing_key=KEY,
        signing_key_fallback=FALLBACK,
    )
    assert result == FALLBACK


def test_wrong_key_rejected_by_sdk() -> None:
    body = canonical_json({"x": 1})
    header = sign_request(body, FALLBACK, NOW)
    result = net.validate_request_sig(
        body=body,
        headers={"x-inngest-signature": header},
        mode=server_lib.ServerKind.CLOUD,
        signing_key=KEY,
        signing_key_fallback=None,
    )
    assert isinstance(result, Exception)


def test_sdk_signature_verifies_with_ours() -> None:
    body = canonical_json({"x": 1})
    header = net.sign_request(body, KEY, int(NOW.timestamp()))
    assert isinstance(header, str)
    verify_request_signature(body, header, [KEY], NOW)


# --- verify -------------------------------------------------------------------


def test_verify_round_trip_and_key_rotation() -> None:
    body = b'{"a":1}'
    header = sign_request(body, FALLBACK, NOW)
    verify_request_signature(body, header, [KEY, FALLBACK], NOW)
    with pytest.raises(SignatureError):
        verify_request_signature(body, header, [KEY], NOW)


def test_verify_accepts_sdk_signed_response_bytes() -> None:
    # Python signs json.dumps(body) (non-canonical spacing) over the raw bytes.
    raw = b'[{"op": "StepRun", "id": "x", "data": 1}]'
    header = net.sign_response(raw, KEY, int(NOW.timestamp()))
    assert isinstance(header, str)
    verify_request_signature(raw, header, [KEY], NOW)
    assert sign_response(raw, KEY, NOW) == header


def test_verify_accepts_canonical_form_of_body() -> None:
    canonical = canonical_json({"b": 1, "a": 2})
    header = sign_request(canonical, KEY, NOW)
    verify_request_signature(b'{ "b": 1, "a": 2 }', header, [KEY], NOW)


@pytest.mark.parametrize("header", [None, "", "garbage", "t=abc&s=00", "t=1", "s=00", "t=&s="])
def test_verify_rejects_malformed_headers(header: str | None) -> None:
    with pytest.raises(SignatureError):
        verify_request_signature(b"{}", header, [KEY], NOW)


def test_verify_rejects_stale_and_future_signatures() -> None:
    body = b"{}"
    old = sign_request(body, KEY, NOW - dt.timedelta(minutes=6))
    with pytest.raises(SignatureError, match="stale"):
        verify_request_signature(body, old, [KEY], NOW)
    future = sign_request(body, KEY, NOW + dt.timedelta(minutes=6))
    with pytest.raises(SignatureError, match="stale"):
        verify_request_signature(body, future, [KEY], NOW)
    verify_request_signature(body, old, [KEY], NOW, max_age=dt.timedelta(minutes=10))


def test_verify_rejects_tampered_body_and_no_keys() -> None:
    header = sign_request(b'{"a":1}', KEY, NOW)
    with pytest.raises(SignatureError):
        verify_request_signature(b'{"a":2}', header, [KEY], NOW)
    with pytest.raises(SignatureError):
        verify_request_signature(b'{"a":1}', header, [], NOW)


# --- bearer -------------------------------------------------------------------


def test_bearer_accepts_plain_prefixed_hash_and_bare_hash() -> None:
    keys = [KEY, FALLBACK]
    assert bearer_matches(f"Bearer {KEY}", keys)
    assert bearer_matches(f"Bearer {hash_signing_key(KEY)}", keys)
    assert bearer_matches(f"Bearer {transforms.hash_signing_key(KEY)}", keys)  # Python SDK
    assert bearer_matches(f"bearer {transforms.hash_signing_key(FALLBACK)}", keys)


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Bearer undefined", "Basic " + KEY, "Bearer deadbeef", KEY],
)
def test_bearer_rejects_everything_else(header: str | None) -> None:
    assert not bearer_matches(header, [KEY])


def test_bearer_with_no_keys_never_matches() -> None:
    assert not bearer_matches(f"Bearer {KEY}", [])


def test_bearer_tolerates_non_hex_configured_key() -> None:
    assert bearer_matches("Bearer not-hex-key", ["not-hex-key"])


# --- the real SDK in production mode --------------------------------------------


def _signed_call(sdk_app: ModuleType, key: str) -> tuple[bytes, str]:
    body = build_call_request(
        run_id="01JRUN00000000000000000000",
        attempt=0,
        max_attempts=5,
        events=[{"name": "t/two", "data": {"k": "v"}, "id": "e1", "ts": 1700000000000}],
        steps={},
        stack=[],
        disable_immediate_execution=False,
    )
    raw = canonical_json(body)
    return raw, sign_request(raw, key, dt.datetime.now(dt.UTC))


def test_production_sdk_accepts_signed_call_request() -> None:
    sdk_app = _sdk_app()
    app, _ = sdk_app.build_app(is_production=True, signing_key=sdk_app.SIGNING_KEY)
    raw, sig = _signed_call(sdk_app, sdk_app.SIGNING_KEY)
    answer = sdk_app.post(
        app,
        f"fnId={sdk_app.APP_ID}-two-steps&stepId=step",
        raw,
        {"x-inngest-signature": sig, "x-inngest-server-kind": "cloud"},
    )
    assert answer.status == 206, answer.body
    assert answer.json()[0]["op"] == "StepRun"
    # The SDK signs its response; we can verify it.
    verify_request_signature(
        answer.body,
        answer.headers["x-inngest-signature"],
        [sdk_app.SIGNING_KEY],
        dt.datetime.now(dt.UTC),
    )


def test_production_sdk_accepts_fallback_key_signature() -> None:
    sdk_app = _sdk_app()
    app, _ = sdk_app.build_app(
        is_production=True,
        signing_key=sdk_app.SIGNING_KEY,
        signing_key_fallback=sdk_app.SIGNING_KEY_FALLBACK,
    )
    raw, sig = _signed_call(sdk_app, sdk_app.SIGNING_KEY_FALLBACK)
    answer = sdk_app.post(
        app, f"fnId={sdk_app.APP_ID}-two-steps&stepId=step", raw, {"x-inngest-signature": sig}
    )
    assert answer.status == 206, answer.body


def test_production_sdk_refuses_unsigned_or_wrongly_signed() -> None:
    sdk_app = _sdk_app()
    app, _ = sdk_app.build_app(is_production=True, signing_key=sdk_app.SIGNING_KEY)
    raw, _sig = _signed_call(sdk_app, sdk_app.SIGNING_KEY)
    query = f"fnId={sdk_app.APP_ID}-two-steps&stepId=step"
    assert sdk_app.post(app, query, raw, {}).status == 401
    bad = sign_request(raw, "signkey-test-" + "ee" * 32, dt.datetime.now(dt.UTC))
    assert sdk_app.post(app, query, raw, {"x-inngest-signature": bad}).status == 401


def test_production_register_bearer_matches() -> None:
    sdk_app = _sdk_app()
    app, _ = sdk_app.build_app(is_production=True, signing_key=sdk_app.SIGNING_KEY)
    captured = sdk_app.capture_register(app)
    assert bearer_matches(captured["headers"]["authorization"], [sdk_app.SIGNING_KEY])
    assert not bearer_matches(captured["headers"]["authorization"], [FALLBACK])

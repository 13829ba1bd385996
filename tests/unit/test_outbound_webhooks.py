"""Standard Webhooks signing, checked against the standardwebhooks library itself."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest
import standardwebhooks

from offload.errors import SignatureError
from offload.outbound.webhooks import generate_secret, sign_headers, verify

BODY = b'{"status":"completed","run_id":"run_01"}'


def _now() -> datetime:
    return datetime.now(UTC)


def test_generate_secret__format_and_uniqueness() -> None:
    a, b = generate_secret(), generate_secret()
    assert a.startswith("whsec_") and a != b
    assert len(base64.b64decode(a.removeprefix("whsec_"))) == 32


def test_sign_headers__shape() -> None:
    at = datetime(2024, 5, 1, 12, 0, 0, 900_000, tzinfo=UTC)
    headers = sign_headers(generate_secret(), msg_id="msg_1", body=BODY, timestamp=at)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(int(at.timestamp()))
    assert headers["webhook-signature"].startswith("v1,")


def test_round_trip() -> None:
    secret = generate_secret()
    headers = sign_headers(secret, msg_id="msg_1", body=BODY, timestamp=_now())
    verify(secret, headers, BODY)


def test_library_verifies_our_signature() -> None:
    """Receivers use the reference library; it must accept what we send."""
    secret = generate_secret()
    headers = sign_headers(secret, msg_id="msg_2", body=BODY, timestamp=_now())
    standardwebhooks.Webhook(secret).verify(BODY, headers, json_parse=False)


def test_non_utc_timestamp_is_converted_not_relabelled() -> None:
    secret = generate_secret()
    now = _now()
    plus_two = now.astimezone(timezone(timedelta(hours=2)))
    headers = sign_headers(secret, msg_id="m", body=BODY, timestamp=plus_two)
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    verify(secret, headers, BODY)


def test_tampered_body_fails() -> None:
    secret = generate_secret()
    headers = sign_headers(secret, msg_id="msg_1", body=BODY, timestamp=_now())
    with pytest.raises(SignatureError):
        verify(secret, headers, BODY.replace(b"completed", b"failed"))


def test_wrong_secret_and_changed_id_fail() -> None:
    secret = generate_secret()
    headers = sign_headers(secret, msg_id="msg_1", body=BODY, timestamp=_now())
    with pytest.raises(SignatureError):
        verify(generate_secret(), headers, BODY)
    with pytest.raises(SignatureError):
        verify(secret, {**headers, "webhook-id": "msg_2"}, BODY)


def test_stale_timestamp_fails() -> None:
    secret = generate_secret()
    old = _now() - timedelta(minutes=10)
    headers = sign_headers(secret, msg_id="m", body=BODY, timestamp=old)
    with pytest.raises(SignatureError, match="too old"):
        verify(secret, headers, BODY)


def test_rotation__any_v1_signature_may_match() -> None:
    old_secret, new_secret = generate_secret(), generate_secret()
    now = _now()
    a = sign_headers(old_secret, msg_id="m", body=BODY, timestamp=now)
    b = sign_headers(new_secret, msg_id="m", body=BODY, timestamp=now)
    both = {**a, "webhook-signature": f"{a['webhook-signature']} {b['webhook-signature']}"}
    verify(old_secret, both, BODY)
    verify(new_secret, both, BODY)


def test_header_names_case_insensitive() -> None:
    secret = generate_secret()
    headers = sign_headers(secret, msg_id="m", body=BODY, timestamp=_now())
    verify(secret, {k.title(): v for k, v in headers.items()}, BODY)


@pytest.mark.parametrize(
    "signature",
    ["", "v1", "v1,a,b", "v1,!!!notbase64", "v2,abc", "garbage"],
)
def test_malformed_signature_header_is_signature_error(signature: str) -> None:
    # The library raises bare ValueError for "v1" and "v1,a,b"; we must not.
    secret = generate_secret()
    headers = sign_headers(secret, msg_id="m", body=BODY, timestamp=_now())
    with pytest.raises(SignatureError):
        verify(secret, {**headers, "webhook-signature": signature}, BODY)


@pytest.mark.parametrize("stamp", ["abc", "nan", "1e400", ""])
def test_malformed_timestamp_is_signature_error(stamp: str) -> None:
    secret = generate_secret()
    headers = sign_headers(secret, msg_id="m", body=BODY, timestamp=_now())
    with pytest.raises(SignatureError):
        verify(secret, {**headers, "webhook-timestamp": stamp}, BODY)


def test_missing_headers_is_signature_error() -> None:
    with pytest.raises(SignatureError):
        verify(generate_secret(), {}, BODY)


def test_binary_body_round_trip_and_tamper() -> None:
    secret = generate_secret()
    body = bytes(range(256))
    headers = sign_headers(secret, msg_id="m", body=body, timestamp=_now())
    verify(secret, headers, body)
    with pytest.raises(SignatureError):
        verify(secret, headers, body[:-1] + b"\x00")


def test_binary_signature_uses_the_same_formula_as_text() -> None:
    """For UTF-8 bodies our raw-bytes formula equals the library's signature."""
    from offload.outbound import webhooks

    secret = generate_secret()
    at = datetime(2024, 1, 1, tzinfo=UTC)
    library = sign_headers(secret, msg_id="m", body=BODY, timestamp=at)["webhook-signature"]
    raw = webhooks._raw_signature(secret, "m", int(at.timestamp()), BODY)
    assert raw == library

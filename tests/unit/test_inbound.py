"""Inbound verification against each provider's published scheme.

Every signed request here is built from the scheme's description
(research/inbound-webhooks.md) with hmac/hashlib or the ``standardwebhooks``
reference library, never with offload's own signing helpers, so a verifier that
drifted from the scheme fails.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

import pytest
import standardwebhooks

from offload.inbound import Refused, verify
from offload.inbound.events import event_name, parse_body, template_problem
from offload.inbound.testing import sample_body, signed_headers
from offload.inbound.verify import audit_headers

NOW = 1_900_000_000.0
BODY = json.dumps({"id": "evt_1", "type": "invoice.paid", "data": {"object": {"id": "in_1"}}}
                  ).encode()
STRIPE_SECRET = "whsec_stripe_test_secret"  # noqa: S105


def stripe_header(secret: str, body: bytes, t: int, extra_v1: str | None = None) -> str:
    """Stripe-Signature per Stripe's docs: v1 = hex HMAC-SHA256(secret, "<t>." + body)."""
    sig = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    parts = [f"t={t}"] + ([f"v1={extra_v1}"] if extra_v1 else []) + [f"v1={sig}", "v0=abc"]
    return ",".join(parts)


# -- Stripe --------------------------------------------------------------------------------

def test_stripe__valid_signature_gives_event_id_as_delivery_id() -> None:
    headers = {"stripe-signature": stripe_header(STRIPE_SECRET, BODY, int(NOW))}
    assert verify("stripe", {}, [STRIPE_SECRET], headers, BODY, now=NOW).delivery_id == "evt_1"


def test_stripe__any_v1_entry_may_match_during_a_roll() -> None:
    headers = {"stripe-signature": stripe_header(STRIPE_SECRET, BODY, int(NOW), "ab" * 32)}
    verify("stripe", {}, [STRIPE_SECRET], headers, BODY, now=NOW)


@pytest.mark.parametrize("skew", [301, -301, 10_000])
def test_stripe__stale_or_future_timestamp_is_refused(skew: int) -> None:
    headers = {"stripe-signature": stripe_header(STRIPE_SECRET, BODY, int(NOW) - skew)}
    with pytest.raises(Refused, match="tolerance"):
        verify("stripe", {}, [STRIPE_SECRET], headers, BODY, now=NOW)


def test_stripe__tolerance_is_configurable() -> None:
    headers = {"stripe-signature": stripe_header(STRIPE_SECRET, BODY, int(NOW) - 600)}
    verify("stripe", {"tolerance": 900}, [STRIPE_SECRET], headers, BODY, now=NOW)


@pytest.mark.parametrize("header", [
    None, "", "garbage", "t=abc,v1=00", "v1=" + "0" * 64, f"t={int(NOW)}", f"t={int(NOW)},v0=1",
])
def test_stripe__missing_or_malformed_header_is_refused(header: str | None) -> None:
    headers = {} if header is None else {"stripe-signature": header}
    with pytest.raises(Refused):
        verify("stripe", {}, [STRIPE_SECRET], headers, BODY, now=NOW)


def test_stripe__tampered_body_or_wrong_secret_is_refused() -> None:
    headers = {"stripe-signature": stripe_header(STRIPE_SECRET, BODY, int(NOW))}
    with pytest.raises(Refused, match="no Stripe v1 signature matches"):
        verify("stripe", {}, [STRIPE_SECRET], headers, BODY + b" ", now=NOW)
    with pytest.raises(Refused):
        verify("stripe", {}, ["whsec_other"], headers, BODY, now=NOW)


def test_stripe__previous_secret_accepted_while_rotating() -> None:
    headers = {"stripe-signature": stripe_header("whsec_old", BODY, int(NOW))}
    verify("stripe", {}, ["whsec_new", "whsec_old"], headers, BODY, now=NOW)


# -- GitHub --------------------------------------------------------------------------------

def github_headers(secret: str, body: bytes, delivery: str = "72d3162e-cc78") -> dict[str, str]:
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"x-hub-signature-256": sig, "x-github-delivery": delivery,
            "x-github-event": "push"}


def test_github__valid_signature_gives_delivery_header() -> None:
    verified = verify("github", {}, ["gh-secret"], github_headers("gh-secret", BODY), BODY,
                      now=NOW)
    assert verified.delivery_id == "72d3162e-cc78"


def test_github__github_docs_example_vector() -> None:
    # The example in GitHub's "Validating webhook deliveries" page.
    body = b"Hello, World!"
    headers = {"x-hub-signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c4"
                                      "6f4379c8b043e17"}
    verify("github", {}, ["It's a Secret to Everybody"], headers, body, now=NOW)


@pytest.mark.parametrize("value", [None, "", "sha1=abc", "sha256=" + "0" * 64, "sha256=zz"])
def test_github__bad_signature_is_refused(value: str | None) -> None:
    headers = github_headers("gh-secret", BODY)
    if value is None:
        del headers["x-hub-signature-256"]
    else:
        headers["x-hub-signature-256"] = value
    with pytest.raises(Refused):
        verify("github", {}, ["gh-secret"], headers, BODY, now=NOW)


# -- Standard Webhooks -----------------------------------------------------------------------

SW_SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def standard_headers(secret: str, body: bytes, msg_id: str, at: datetime) -> dict[str, str]:
    """Signed with the reference library, as a Standard Webhooks sender does."""
    signature = standardwebhooks.Webhook(secret).sign(msg_id, at, body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signature}


def standard_by_hand(secret: str, body: bytes, msg_id: str, t: int) -> dict[str, str]:
    """The same from the description: base64 HMAC-SHA256(b64decode(key), "id.t.body")."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{t}.".encode() + body, hashlib.sha256).digest()
    return {"webhook-id": msg_id, "webhook-timestamp": str(t),
            "webhook-signature": "v1,bm90LWl0 v1," + base64.b64encode(digest).decode()}


def test_standard__reference_library_and_hand_built_signatures_verify() -> None:
    now = time.time()
    at = datetime.fromtimestamp(now, UTC)
    got = verify("standard", {}, [SW_SECRET], standard_headers(SW_SECRET, BODY, "msg_1", at),
                 BODY, now=now)
    assert got.delivery_id == "msg_1"
    verify("standard", {}, [SW_SECRET], standard_by_hand(SW_SECRET, BODY, "msg_2", int(now)),
           BODY, now=now)


def test_standard__stale_wrong_or_malformed_is_refused() -> None:
    now = time.time()
    with pytest.raises(Refused, match="tolerance"):
        verify("standard", {}, [SW_SECRET],
               standard_by_hand(SW_SECRET, BODY, "m", int(now) - 400), BODY, now=now)
    with pytest.raises(Refused, match="no webhook-signature entry matches"):
        verify("standard", {}, [SW_SECRET], standard_by_hand(SW_SECRET, BODY, "m", int(now)),
               BODY + b"x", now=now)
    for broken in ({}, {"webhook-id": "m", "webhook-timestamp": "soon",
                        "webhook-signature": "v1,AAAA"}):
        with pytest.raises(Refused):
            verify("standard", {}, [SW_SECRET], broken, BODY, now=now)


# -- generic HMAC and token -----------------------------------------------------------------

@pytest.mark.parametrize(("algorithm", "encoding", "prefix"), [
    ("sha256", "hex", ""), ("sha1", "hex", "sha1="), ("sha512", "base64", ""),
    ("sha256", "base64", "v1="),
])
def test_hmac__named_header_algorithm_encoding_and_prefix(algorithm: str, encoding: str,
                                                          prefix: str) -> None:
    digest = hmac.new(b"shh", BODY, getattr(hashlib, algorithm)).digest()
    text = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
    options = {"header": "X-Signature", "algorithm": algorithm, "encoding": encoding,
               "prefix": prefix, "id_header": "X-Delivery"}
    headers = {"x-signature": prefix + text, "x-delivery": "d-9"}
    assert verify("hmac", options, ["shh"], headers, BODY, now=NOW).delivery_id == "d-9"
    headers["x-signature"] = prefix + ("0" * len(text))
    with pytest.raises(Refused, match="X-Signature does not match"):
        verify("hmac", options, ["shh"], headers, BODY, now=NOW)


def test_token__bearer_or_named_header_constant_time() -> None:
    verify("token", {}, ["tok"], {"authorization": "Bearer tok"}, BODY, now=NOW)
    verify("token", {"header": "X-Token"}, ["tok"], {"x-token": "tok"}, BODY, now=NOW)
    for headers in ({}, {"authorization": "Basic tok"}, {"authorization": "Bearer nope"}):
        with pytest.raises(Refused):
            verify("token", {}, ["tok"], headers, BODY, now=NOW)


def test_none_needs_nothing_and_secret_kinds_need_a_secret() -> None:
    assert verify("none", {}, [], {}, BODY, now=NOW).delivery_id is None
    with pytest.raises(Refused, match="no secret"):
        verify("github", {}, [], github_headers("x", BODY), BODY, now=NOW)


def test_refusal_reasons_never_contain_the_secret() -> None:
    secret = "very-secret-value-123"
    for kind, headers in (("github", {"x-hub-signature-256": "sha256=00"}),
                          ("token", {"authorization": "Bearer wrong"}),
                          ("stripe", {"stripe-signature": f"t={int(NOW)},v1=00"})):
        with pytest.raises(Refused) as info:
            verify(kind, {}, [secret], headers, BODY, now=NOW)
        assert secret not in info.value.reason


# -- the test-delivery signer agrees with the verifiers ------------------------------------

@pytest.mark.parametrize(("kind", "options", "secret"), [
    ("stripe", {}, STRIPE_SECRET), ("github", {}, "gh"), ("standard", {}, SW_SECRET),
    ("hmac", {"header": "X-Sig", "encoding": "base64", "id_header": "X-Id"}, "k"),
    ("token", {"header": "X-Token"}, "t"), ("none", {}, None),
])
def test_signed_test_delivery_verifies(kind: str, options: dict[str, str],
                                       secret: str | None) -> None:
    body = json.dumps(sample_body(kind, "test_1")).encode()
    headers = signed_headers(kind, options, secret, body, delivery_id="test_1")
    got = verify(kind, options, [secret] if secret else [], headers, body, now=time.time())
    assert got.delivery_id in ("test_1", None)


# -- what a delivery becomes --------------------------------------------------------------

def test_event_name_template() -> None:
    data = {"type": "invoice.paid", "data": {"object": {"id": "in_1"}}, "n": {"x": 1}}
    headers = {"x-github-event": "push"}
    hook = {"id": "W1", "name": "billing"}
    assert event_name("stripe/{{ type }}", data, headers, hook) == "stripe/invoice.paid"
    assert event_name("gh/{{headers.X-GitHub-Event}}", data, headers, hook) == "gh/push"
    assert event_name("{{ data.data.object.id }}:{{ webhook.name }}", data, headers, hook) == \
        "in_1:billing"
    assert event_name("x/{{ missing }}/{{ n }}", data, headers, hook) == "x/unknown/unknown"
    assert template_problem("a/{{ type") is not None and template_problem("") is not None
    assert template_problem("stripe/{{ type }}") is None


def test_parse_body_json_form_and_text() -> None:
    assert parse_body(b'{"a": 1}', "application/json") == {"a": 1}
    assert parse_body(b"[1]", None) == {"body": [1]}
    assert parse_body(b"payload=%7B%22a%22%3A2%7D", "application/x-www-form-urlencoded") == \
        {"a": 2}
    assert parse_body(b"hello", "text/plain") == {"raw": "hello"}


def test_audit_headers_keep_signatures_never_tokens() -> None:
    headers = {"authorization": "Bearer tok", "x-hub-signature-256": "sha256=1",
               "x-github-delivery": "d", "cookie": "c", "x-custom": "v", "x-token": "t"}
    kept = audit_headers("github", {"keep_headers": ["X-Custom", "Cookie"]}, headers)
    assert kept == {"x-hub-signature-256": "sha256=1", "x-github-delivery": "d",
                    "x-custom": "v"}
    assert "x-token" not in audit_headers("token", {"header": "X-Token"}, headers)

"""The webhook and secret endpoints under generated input (hypothesis), on both stores.

Promise (DESIGN.md §4, issue 12): any input gets a 2xx or a 4xx whose body names the
field, never a 5xx; a rejected request writes nothing; a delivery nobody signed gets
401 and writes nothing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tests.fuzz.test_tasks_input import assert_problem

FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

text = st.text(max_size=40)
scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | text
anything = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                        max_leaves=8)
header_names = st.sampled_from(["X-Signature", "X-Id", "bad name", "", "x" * 200]) | text
verify = st.fixed_dictionaries({"kind": st.sampled_from(
    ["stripe", "github", "standard", "hmac", "token", "none", "", "STRIPE"]) | text}, optional={
    "secret": st.none() | text | st.sampled_from(["whsec_", "whsec_AAAA", "whsec_!!"]),
    "tolerance": st.integers(-5, 5000) | text,
    "header": st.none() | header_names,
    "algorithm": st.sampled_from(["sha256", "sha1", "md5", ""]),
    "encoding": st.sampled_from(["hex", "base64", "b32"]),
    "prefix": text, "id_header": header_names,
    "keep_headers": st.lists(header_names, max_size=3) | text,
    "extra": anything,
}) | anything
webhook_bodies = st.fixed_dictionaries({}, optional={
    "name": text | st.integers(), "verify": verify,
    "event": st.none() | text | st.sampled_from(["a/{{ type }}", "{{", "x/{{ a.b }}", ""]),
    "forward": st.none() | anything | st.fixed_dictionaries(
        {"url": st.sampled_from(["http://127.0.0.1:9/x", "ftp://x", "", "http://{{ a }}"])},
        optional={"body": anything, "method": st.sampled_from(["GET", "POST", "X"]),
                  "retries": st.integers(-1, 60), "idempotency_key": text,
                  "headers": st.dictionaries(header_names, text, max_size=2)}),
    "extra": anything,
}) | anything


@pytest.fixture(scope="module")
def signed_hooks(client: TestClient) -> list[dict[str, Any]]:
    """One webhook of each kind that needs a signature (per store)."""
    hooks = []
    for kind, secret in (("stripe", "whsec_fuzz"), ("github", "fuzz-gh"), ("standard", None),
                         ("token", "fuzz-token-value"), ("hmac", "fuzz-hmac")):
        verify: dict[str, Any] = {"kind": kind}
        if secret:
            verify["secret"] = secret
        if kind == "hmac":
            verify["header"] = "X-Sig"
        created = client.post("/v1/webhooks", json={"name": f"fuzz-{kind}", "verify": verify})
        assert created.status_code == 201, created.text
        hooks.append(created.json())
    return hooks


@pytest.fixture(scope="module")
def patch_hook(client: TestClient) -> dict[str, Any]:
    created = client.post("/v1/webhooks", json={"name": "fuzz-patch",
                                                "verify": {"kind": "github", "secret": "s3"}})
    assert created.status_code == 201, created.text
    out: dict[str, Any] = created.json()
    return out


def _count(client: TestClient, path: str) -> int:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return len(response.json()["data"])


def _problem_fields(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert body["status"] == response.status_code and body["title"]
        if response.status_code == 422:
            assert body["errors"] and all(e["field"] for e in body["errors"])


@FUZZ
@given(body=webhook_bodies)
def test_create_webhook__201_or_4xx_naming_the_field_and_nothing_written(
        client: TestClient, body: Any) -> None:
    before = _count(client, "/v1/webhooks")
    response = client.post("/v1/webhooks", json=body)
    _problem_fields(response)
    after = _count(client, "/v1/webhooks")
    if response.status_code == 201:
        created = response.json()
        assert after == before + 1 and created["url"] == f"/w/{created['id']}"
        given_secret = body.get("verify", {}).get("secret") if isinstance(body, dict) else None
        if isinstance(given_secret, str) and given_secret:
            assert given_secret not in response.text
    else:
        assert response.status_code in (400, 409, 422) and after == before


@FUZZ
@given(name=st.text(max_size=70) | st.sampled_from(["OK_1", "_x", "1bad", "a-b", "a" * 65]),
       value=scalars | anything)
def test_put_secret__2xx_or_4xx_and_never_echoed(client: TestClient, name: str,
                                                 value: Any) -> None:
    before = {s["name"]: s["updated_at"] for s in client.get("/v1/secrets").json()["data"]}
    response = client.put(f"/v1/secrets/{quote(name, safe='')}", json={"value": value})
    _problem_fields(response)
    after = {s["name"]: s["updated_at"] for s in client.get("/v1/secrets").json()["data"]}
    if response.status_code in (200, 201):
        assert isinstance(value, str) and value
        shown = response.json()
        assert shown["name"] == name
        assert set(shown) == {"name", "reference", "created_at", "updated_at"}
        for entry in [shown, *client.get("/v1/secrets").json()["data"]]:
            assert set(entry) == {"name", "reference", "created_at", "updated_at"}
            for field, text in entry.items():  # a name or a date may contain a short value
                if field in ("created_at", "updated_at") or value in entry["name"]:
                    continue
                assert value not in text
    else:
        assert after == before


@FUZZ
@given(headers=st.dictionaries(st.sampled_from([
    "stripe-signature", "x-hub-signature-256", "x-github-delivery", "webhook-id",
    "webhook-timestamp", "webhook-signature", "authorization", "content-type"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80), max_size=6),
    body=st.binary(max_size=300))
def test_unsigned_deliveries__401_and_nothing_written(client: TestClient,
                                                      signed_hooks: list[dict[str, Any]],
                                                      headers: dict[str, str],
                                                      body: bytes) -> None:
    for hook in signed_hooks:
        response = client.post(hook["url"], content=body, headers=headers)
        assert_problem(response, 401)
        assert response.json()["code"] == "signature_refused"
        deliveries = client.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["data"]
        assert deliveries == []


@FUZZ
@given(patch=webhook_bodies, rotate=anything | st.fixed_dictionaries({}, optional={
    "secret": st.none() | text, "overlap": st.integers(-10, 10**7) | text, "x": anything}))
def test_patch_and_rotate__2xx_or_4xx_and_a_refused_change_writes_nothing(
        client: TestClient, patch_hook: dict[str, Any], patch: Any, rotate: Any) -> None:
    path = f"/v1/webhooks/{patch_hook['id']}"
    before = client.get(path).json()
    response = client.patch(path, json=patch)
    _problem_fields(response)
    if response.status_code != 200:
        assert client.get(path).json() == before
    before = client.get(path).json()
    response = client.post(f"{path}/rotate", json=rotate)
    _problem_fields(response)
    if response.status_code != 200:
        assert client.get(path).json() == before


def test_unknown_webhook_and_bad_ids(client: TestClient) -> None:
    assert_problem(client.post("/w/NOPE", content=b"{}"), 404)
    assert_problem(client.get("/v1/webhooks/NOPE"), 404)
    assert_problem(client.get("/v1/webhooks/%00"), 404)
    assert_problem(client.delete("/v1/secrets/NOPE"), 404)
    assert client.post("/w/a%00b", content=b"{}").status_code == 404

"""Generated bad input to the pause, audit and alert endpoints, on both stores.

Promise (DESIGN.md §4): any input gets a 2xx or a 4xx whose body names the field, never
a 5xx, and a refused request writes nothing — no pause, no alert rule, no audit entry.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

json_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
json_values = st.recursive(json_scalars,
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                           max_leaves=8)
names = st.one_of(st.text(max_size=80), st.sampled_from(
    ["ok-name", "", "a b", "x" * 65, "\x00", "é", "../x", "q:1.2_3-4"]))
urls = st.one_of(st.text(max_size=40), st.sampled_from(
    ["http://example.com/hook", "https://hooks.slack.com/services/x", "ftp://x/y",
     "http://user:pw@example.com/", "http://", "http://example.com:0/", "javascript:x"]))
rule_fields: dict[str, Any] = {
    "name": names, "kind": st.one_of(st.text(max_size=20), st.sampled_from(
        ["failure_rate", "dead_letter_growth", "oldest_due", "cron_missed"])),
    "function_id": st.one_of(st.none(), names), "queue": st.one_of(st.none(), names),
    "threshold": st.one_of(json_scalars, st.floats(-10, 10)),
    "window_s": st.one_of(json_scalars, st.integers(-100, 10**8)),
    "min_runs": json_scalars, "url": urls, "enabled": json_scalars,
}
rules = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional=rule_fields),
    st.fixed_dictionaries({}, optional={**rule_fields, "extra": json_values}),
)


def _snapshot(client: TestClient) -> tuple[Any, ...]:
    alerts = client.get("/v1/alerts").json()["data"]
    queues = client.get("/v1/queues").json()["data"]
    audit = client.get("/v1/audit", params={"limit": 500}).json()["data"]
    return (sorted((a["id"], a["name"], a["threshold"]) for a in alerts),
            sorted((q["name"], q["paused"]) for q in queues), len(audit))


def _fields(response: Any) -> list[str]:
    body = response.json()
    return [e["field"] for e in body.get("errors") or []]


@FUZZ
@given(body=rules)
def test_alert_create_and_replace(client: TestClient, body: Any) -> None:
    before = _snapshot(client)
    response = client.post("/v1/alerts", json=body)
    assert response.status_code < 500, response.text
    if response.status_code == 201:
        rule = response.json()
        replaced = client.put(f"/v1/alerts/{rule['id']}", json=body)
        assert replaced.status_code == 200, replaced.text
        assert client.delete(f"/v1/alerts/{rule['id']}").status_code == 204
        return
    assert response.status_code in (400, 409, 422), response.text
    if response.status_code in (400, 422):
        fields = _fields(response)
        assert fields and all(f.startswith("body") for f in fields), response.text
    assert _snapshot(client) == before


@FUZZ
@given(rule_id=names.filter(lambda n: n not in ("", ".", "..", "events")), body=rules)
def test_alert_by_id(client: TestClient, rule_id: str, body: Any) -> None:
    before = _snapshot(client)
    path = f"/v1/alerts/{quote(rule_id, safe='')}"
    for response in (client.get(path), client.put(path, json=body), client.delete(path)):
        assert response.status_code in (400, 404, 405, 409, 422), response.text
    assert _snapshot(client) == before


@FUZZ
@given(name=names.filter(lambda n: n not in ("", ".", "..")),
       verb=st.sampled_from(["pause", "resume"]), kind=st.sampled_from(["functions", "queues"]))
def test_pause_endpoints(client: TestClient, name: str, verb: str, kind: str) -> None:
    before = _snapshot(client)
    response = client.post(f"/v1/{kind}/{quote(name, safe='')}/{verb}")
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        client.post(f"/v1/{kind}/{quote(name, safe='')}/resume")
        return
    assert response.status_code in (404, 405, 422), response.text
    if response.status_code == 422:
        assert _fields(response) == ["path.name" if kind == "queues" else "path.function_id"]
    assert _snapshot(client) == before


@FUZZ
@given(params=st.dictionaries(
    st.sampled_from(["action", "actor", "target_id", "after", "before", "cursor", "limit",
                     "other"]),
    st.one_of(st.text(max_size=60), st.integers(-5, 1000).map(str),
              st.sampled_from(["2030-01-01T00:00:00Z", "2030-01-01T00:00:00", "run.cancel",
                               "01J00000000000000000000000"])), max_size=4))
def test_audit_query(client: TestClient, params: dict[str, str]) -> None:
    response = client.get("/v1/audit", params=params)
    assert response.status_code in (200, 400, 422), response.text
    if response.status_code != 200:
        fields = _fields(response)
        assert fields and all(f.startswith("query.") for f in fields), response.text

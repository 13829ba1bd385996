"""API keys: stored by hash, found while unrevoked, listed newest first."""

from __future__ import annotations

from typing import Any

from offload.models import ApiKey

from .conftest import at


def _key(key_id: str, created: float = 0) -> ApiKey:
    return ApiKey(id=key_id, name=f"name-{key_id}", scope="admin", created_at=at(created))


async def test_api_key_insert__then_find(store: Any) -> None:
    await store.api_key_insert(key=_key("k1"), key_hash="h1")
    found = await store.api_key_find(key_hash="h1")
    assert found == _key("k1")
    assert await store.api_key_find(key_hash="other") is None


async def test_api_key_list__newest_first(store: Any) -> None:
    assert await store.api_key_list() == []
    await store.api_key_insert(key=_key("k1", 0), key_hash="h1")
    await store.api_key_insert(key=_key("k2", 10), key_hash="h2")
    assert [k.id for k in await store.api_key_list()] == ["k2", "k1"]


async def test_api_key_revoke__hides_key(store: Any) -> None:
    await store.api_key_insert(key=_key("k1"), key_hash="h1")
    assert await store.api_key_revoke(key_id="k1", at=at(5)) is True
    assert await store.api_key_find(key_hash="h1") is None
    [listed] = await store.api_key_list()
    assert listed.revoked_at == at(5)
    assert await store.api_key_revoke(key_id="k1", at=at(6)) is False  # already revoked
    assert await store.api_key_revoke(key_id="missing", at=at(6)) is False
    [listed] = await store.api_key_list()
    assert listed.revoked_at == at(5)

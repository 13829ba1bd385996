"""lease_expire_owned: only leases under the given owner prefix are expired."""

from __future__ import annotations

from typing import Any

from .conftest import at, claim_one, create_run


async def test_lease_expire_owned__expires_only_the_prefix(store: Any) -> None:
    for i in range(3):
        await create_run(store, id=f"r{i}")
    a, _ = await claim_one(store, now=at(0), owner="n1-0/old", lease_until=at(30))
    await claim_one(store, now=at(0), owner="n1-1/live", lease_until=at(30))
    await claim_one(store, now=at(0), owner="n1-00/other", lease_until=at(30))
    assert await store.lease_expire_owned(owner_prefix="n1-0/", now=at(5)) == 1
    rescued = await store.lease_rescue_expired(now=at(5), max_expiries=5)
    assert [r.item_id for r in rescued] == [a.id]
    assert rescued[0].expiries == 1
    assert await store.lease_expire_owned(owner_prefix="n1-0/", now=at(5)) == 0

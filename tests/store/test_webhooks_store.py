"""Store contract for webhooks, deliveries and secrets (SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from offload.ids import new_id
from offload.models import ItemKind, Webhook, WebhookDelivery
from offload.store.base import Change, NewEvent, NewItem, NewRun
from tests.store.conftest import T0, at


def _webhook(**kw: Any) -> Webhook:
    base = Webhook(id=new_id(), name="w", verify={"kind": "github"}, event="gh/{{ x }}",
                   forward=None, created_at=T0, updated_at=T0, secret="v1.sealed")
    return replace(base, **kw)


def _delivery(webhook_id: str, delivery_id: str, body: bytes = b'{"a": 1}',
              received: float = 0) -> WebhookDelivery:
    return WebhookDelivery(id=new_id(), webhook_id=webhook_id, delivery_id=delivery_id,
                           headers={"x-github-delivery": delivery_id}, body=body,
                           received_at=at(received), event_id=new_id(), event_name="gh/1")


def _change(delivery: WebhookDelivery) -> Change:
    assert delivery.event_id is not None
    event = NewEvent(id=delivery.event_id, name="gh/1", data={"a": 1}, ts=1,
                     received_at=delivery.received_at, correlation_id=delivery.delivery_id,
                     traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    run = NewRun(id=new_id(), function_id="http", created_at=T0, event_ids=[event.id],
                 items=[NewItem(kind=ItemKind.RUN, due_at=T0)])
    return Change(events=[event], runs=[run])


async def test_webhook_crud(store: Any) -> None:
    hook = _webhook()
    await store.webhook_insert(webhook=hook)
    assert await store.webhook_get(webhook_id=hook.id) == hook
    changed = replace(hook, name="w2", previous_secret="v1.old", previous_until=at(60),
                      forward={"url": "https://x.example/"}, updated_at=at(1))
    assert await store.webhook_update(webhook=changed)
    assert await store.webhook_list() == [changed]
    assert await store.secret_stored_count() == 1
    assert await store.webhook_delete(webhook_id=hook.id)
    assert await store.webhook_get(webhook_id=hook.id) is None
    assert not await store.webhook_delete(webhook_id=hook.id)
    assert not await store.webhook_update(webhook=changed)


async def test_deliver_once_per_delivery_id_with_its_event_and_run(store: Any) -> None:
    hook = _webhook()
    await store.webhook_insert(webhook=hook)
    first = _delivery(hook.id, "d-1", body=b"\x00\xffbinary")
    stored, created = await store.webhook_deliver(delivery=first, change=_change(first))
    assert created and stored == first
    event = await store.event_get(event_id=first.event_id)
    assert event.correlation_id == "d-1" and event.traceparent.startswith("00-aaa")
    again = _delivery(hook.id, "d-1")
    stored, created = await store.webhook_deliver(delivery=again, change=_change(again))
    assert not created and stored.id == first.id and stored.body == b"\x00\xffbinary"
    assert await store.event_get(event_id=again.event_id) is None  # nothing of it written
    other = _delivery(hook.id, "d-2", received=10)
    await store.webhook_deliver(delivery=other, change=_change(other))
    page = await store.webhook_delivery_list(webhook_id=hook.id, cursor=None, limit=1)
    assert [d.delivery_id for d in page.data] == ["d-2"] and page.next_cursor
    rest = await store.webhook_delivery_list(webhook_id=hook.id, cursor=page.next_cursor,
                                             limit=5)
    assert [d.delivery_id for d in rest.data] == ["d-1"] and rest.next_cursor is None
    assert await store.webhook_delivery_prune(received_before=at(5), limit=100) == 1
    left = await store.webhook_delivery_list(webhook_id=hook.id, cursor=None, limit=5)
    assert [d.delivery_id for d in left.data] == ["d-2"]


async def test_secrets_put_list_delete(store: Any) -> None:
    assert await store.secret_put(name="A", ciphertext="v1.one", at=T0)
    assert not await store.secret_put(name="A", ciphertext="v1.two", at=at(5))
    assert await store.secret_get_many(names=["A", "B"]) == {"A": "v1.two"}
    [info] = await store.secret_list()
    assert (info.name, info.created_at, info.updated_at) == ("A", T0, at(5))
    assert await store.secret_stored_count() == 1
    assert await store.secret_delete(name="A") and not await store.secret_delete(name="A")
    assert await store.secret_get_many(names=[]) == {}


async def test_event_without_consumers_gets_a_fanout_item_only_if_a_run_waits(
        store: Any) -> None:
    from offload.store.base import NewWait
    from tests.store.conftest import claim_all, create_run

    hook = _webhook()
    await store.webhook_insert(webhook=hook)
    lonely = _delivery(hook.id, "lonely")
    change = _change(lonely)
    change.runs = []
    change.events[0].fanout = False
    await store.webhook_deliver(delivery=lonely, change=change)
    assert await claim_all(store, kinds=(ItemKind.EVENT,)) == []

    run = await create_run(store, item=False)
    await store.apply(Change(waits=[NewWait(id=new_id(), run_id=run.id, step_id="w",
                                            created_at=T0, event_name="gh/1")]))
    awaited = _delivery(hook.id, "awaited")
    change = _change(awaited)
    change.runs = []
    change.events[0].fanout = False
    await store.webhook_deliver(delivery=awaited, change=change)
    items = await claim_all(store, kinds=(ItemKind.EVENT,))
    assert [i.payload["event_id"] for i in items] == [awaited.event_id]

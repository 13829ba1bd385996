"""Store queries for inbound webhooks, their deliveries, and encrypted secrets.

A mixin of :class:`offload.store.sql.SqlStore` (same ``?`` SQL on both databases).
:meth:`WebhookQueries.webhook_deliver` is the one write behind ``POST /w/{id}``: the
delivery row (unique per webhook and provider delivery id) and the event (and
forward run) it becomes commit together, or, for a redelivery, nothing does.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from offload.clock import from_ms, to_ms
from offload.models import SecretInfo, Webhook, WebhookDelivery
from offload.store.base import Change, ChangeResult, Page

if TYPE_CHECKING:
    from offload.store.rows import Tx

T = TypeVar("T")

WEBHOOK_COLS = ("id, name, verify, secret, previous_secret, previous_until, event, forward, "
                "created_at, updated_at")
DELIVERY_COLS = ("id, webhook_id, delivery_id, event_id, event_name, run_id, headers, body, "
                 "body_base64, received_at")


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _dt(value: int) -> datetime:
    out = from_ms(value)
    assert out is not None
    return out


def row_webhook(r: tuple[Any, ...]) -> Webhook:
    """A ``webhooks`` row as a Webhook."""
    return Webhook(id=r[0], name=r[1], verify=orjson.loads(r[2]), secret=r[3],
                   previous_secret=r[4], previous_until=from_ms(r[5]), event=r[6],
                   forward=None if r[7] is None else orjson.loads(r[7]),
                   created_at=_dt(r[8]), updated_at=_dt(r[9]))


def row_delivery(r: tuple[Any, ...]) -> WebhookDelivery:
    """A ``webhook_deliveries`` row as a WebhookDelivery."""
    body = base64.b64decode(r[7]) if r[8] else str(r[7]).encode()
    return WebhookDelivery(id=r[0], webhook_id=r[1], delivery_id=r[2], event_id=r[3],
                           event_name=r[4], run_id=r[5], headers=orjson.loads(r[6]),
                           body=body, received_at=_dt(r[9]))


def _body_column(body: bytes) -> tuple[str, int]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), 1
    if "\x00" in text:  # PostgreSQL text cannot hold NUL
        return base64.b64encode(body).decode("ascii"), 1
    return text, 0


def _webhook_params(w: Webhook) -> tuple[Any, ...]:
    return (w.id, w.name, _json(w.verify), w.secret, w.previous_secret,
            None if w.previous_until is None else to_ms(w.previous_until), w.event,
            _json(w.forward), to_ms(w.created_at), to_ms(w.updated_at))


class WebhookQueries:
    """Webhook, delivery and secret queries; needs the SqlStore backend hooks."""

    async def _write(self, fn: Callable[[Tx], T]) -> T:
        raise NotImplementedError

    async def _read(self, fn: Callable[[Tx], T]) -> T:
        raise NotImplementedError

    def _apply(self, tx: Tx, change: Change) -> ChangeResult:
        raise NotImplementedError

    # -- webhooks --------------------------------------------------------------------------

    async def webhook_insert(self, *, webhook: Webhook) -> None:
        """Store a new webhook."""
        await self._write(lambda tx: tx.execute(
            f"INSERT INTO webhooks ({WEBHOOK_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _webhook_params(webhook)))

    async def webhook_update(self, *, webhook: Webhook) -> bool:
        """Replace a webhook's fields (all but ``created_at``); False if it is gone."""
        def fn(tx: Tx) -> bool:
            p = _webhook_params(webhook)
            tx.execute("UPDATE webhooks SET name = ?, verify = ?, secret = ?, "
                       "previous_secret = ?, previous_until = ?, event = ?, forward = ?, "
                       "updated_at = ? WHERE id = ?", (*p[1:8], p[9], p[0]))
            return tx.rowcount > 0
        return await self._write(fn)

    async def webhook_get(self, *, webhook_id: str) -> Webhook | None:
        """One webhook."""
        rows = await self._read(lambda tx: tx.execute(
            f"SELECT {WEBHOOK_COLS} FROM webhooks WHERE id = ?", (webhook_id,)))
        return row_webhook(rows[0]) if rows else None

    async def webhook_list(self) -> list[Webhook]:
        """Every webhook, newest first."""
        rows = await self._read(lambda tx: tx.execute(
            f"SELECT {WEBHOOK_COLS} FROM webhooks ORDER BY id DESC"))
        return [row_webhook(r) for r in rows]

    async def webhook_delete(self, *, webhook_id: str) -> bool:
        """Remove a webhook and its delivery records; False if there is no such webhook."""
        def fn(tx: Tx) -> bool:
            tx.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))
            found = tx.rowcount > 0
            tx.execute("DELETE FROM webhook_deliveries WHERE webhook_id = ?", (webhook_id,))
            return found
        return await self._write(fn)

    async def webhook_deliver(self, *, delivery: WebhookDelivery,
                              change: Change) -> tuple[WebhookDelivery, bool]:
        """Record an accepted delivery and apply ``change`` in one transaction.

        A delivery id already recorded for the webhook writes nothing and returns the
        first delivery with False. An event given without fan-out (no function consumes
        its name) gets one anyway if a run waits for its name.
        """
        body, encoded = _body_column(delivery.body)

        def fn(tx: Tx) -> tuple[WebhookDelivery, bool]:
            tx.execute(
                f"INSERT INTO webhook_deliveries ({DELIVERY_COLS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (webhook_id, delivery_id) "
                "DO NOTHING",
                (delivery.id, delivery.webhook_id, delivery.delivery_id, delivery.event_id,
                 delivery.event_name, delivery.run_id, _json(delivery.headers), body,
                 encoded, to_ms(delivery.received_at)))
            if tx.rowcount == 0:
                rows = tx.execute(f"SELECT {DELIVERY_COLS} FROM webhook_deliveries "
                                  "WHERE webhook_id = ? AND delivery_id = ?",
                                  (delivery.webhook_id, delivery.delivery_id))
                return row_delivery(rows[0]), False
            for event in change.events:
                if not event.fanout and tx.execute(
                        "SELECT 1 FROM waits WHERE event_name = ? LIMIT 1", (event.name,)):
                    event.fanout = True  # a run waits for this name: it must be resumed
            self._apply(tx, change)
            return delivery, True
        return await self._write(fn)

    async def webhook_delivery_list(self, *, webhook_id: str, cursor: str | None,
                                    limit: int) -> Page[WebhookDelivery]:
        """A webhook's deliveries, newest first."""
        def fn(tx: Tx) -> list[tuple[Any, ...]]:
            if cursor is None:
                return tx.execute(f"SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE "
                                  "webhook_id = ? ORDER BY id DESC LIMIT ?",
                                  (webhook_id, limit + 1))
            return tx.execute(f"SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE "
                              "webhook_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
                              (webhook_id, cursor, limit + 1))
        rows = await self._read(fn)
        data = [row_delivery(r) for r in rows[:limit]]
        return Page(data, data[-1].id if len(rows) > limit else None)

    async def webhook_delivery_prune(self, *, received_before: datetime, limit: int) -> int:
        """Delete up to ``limit`` delivery records received before the time."""
        def fn(tx: Tx) -> int:
            tx.execute("DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM "
                       "webhook_deliveries WHERE received_at < ? LIMIT ?)",
                       (to_ms(received_before), limit))
            return tx.rowcount
        return await self._write(fn)

    # -- secrets ---------------------------------------------------------------------------

    async def secret_put(self, *, name: str, ciphertext: str, at: datetime) -> bool:
        """Store or replace a secret's encrypted value; True if it is new."""
        def fn(tx: Tx) -> bool:
            tx.execute("UPDATE secrets SET ciphertext = ?, updated_at = ? WHERE name = ?",
                       (ciphertext, to_ms(at), name))
            if tx.rowcount > 0:
                return False
            tx.execute("INSERT INTO secrets (name, ciphertext, created_at, updated_at) "
                       "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                       "ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
                       (name, ciphertext, to_ms(at), to_ms(at)))
            return True
        return await self._write(fn)

    async def secret_get_many(self, *, names: list[str]) -> dict[str, str]:
        """The encrypted values of the named secrets that exist."""
        if not names:
            return {}
        marks = ", ".join("?" for _ in names)
        rows = await self._read(lambda tx: tx.execute(
            f"SELECT name, ciphertext FROM secrets WHERE name IN ({marks})", names))
        return {r[0]: r[1] for r in rows}

    async def secret_list(self) -> list[SecretInfo]:
        """Every secret's name and dates, by name."""
        rows = await self._read(lambda tx: tx.execute(
            "SELECT name, created_at, updated_at FROM secrets ORDER BY name"))
        return [SecretInfo(name=r[0], created_at=_dt(r[1]), updated_at=_dt(r[2])) for r in rows]

    async def secret_delete(self, *, name: str) -> bool:
        """Remove a secret; False if there is no such secret."""
        def fn(tx: Tx) -> bool:
            tx.execute("DELETE FROM secrets WHERE name = ?", (name,))
            return tx.rowcount > 0
        return await self._write(fn)

    async def secret_stored_count(self) -> int:
        """Encrypted values stored: secrets plus webhook signing secrets."""
        def fn(tx: Tx) -> int:
            a = tx.execute("SELECT COUNT(*) FROM secrets")[0][0]
            b = tx.execute("SELECT COUNT(*) FROM webhooks WHERE secret IS NOT NULL")[0][0]
            return int(a) + int(b)
        return await self._read(fn)

"""Store contract for operator state, on SQLite and PostgreSQL: pauses held at claim
time (and released in order under concurrency limits), the audit log's filters, cursor
and pruning, and alert state changes recorded once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from offload.ids import new_id
from offload.models import App, Function, ItemKind, RunStatus
from offload.protocol.function_config import load_function_config
from offload.store.base import Change, ConcurrencyLimit, RunFilter, RunFlow
from offload.store.ops import Actor, AuditEntry, AuditFilter
from tests.store.conftest import FAR, T0, at, claim_all, create_run, new_run


async def _claimed_run_ids(store: Any, now: Any = FAR) -> list[str]:
    return [i.run_id for i in await claim_all(store, now=now, kinds=(ItemKind.RUN,))]


async def test_a_paused_queue_or_function_is_held_at_claim_and_released_by_resume(
        store: Any) -> None:
    held_q = await create_run(store, queue="q-paused", created_at=at(1))
    held_f = await create_run(store, function_id="fn-paused", queue="other", created_at=at(2))
    free = await create_run(store, queue="other", created_at=at(3))
    assert await store.pause_set(kind="queue", target="q-paused", at=T0, by="alice")
    assert not await store.pause_set(kind="queue", target="q-paused", at=T0)  # already
    assert await store.pause_set(kind="function", target="fn-paused", at=T0)
    later = await create_run(store, queue="q-paused", created_at=at(4))  # queued while paused

    assert await _claimed_run_ids(store) == [free.id]
    assert await _claimed_run_ids(store) == []
    run = await store.run_get(run_id=held_q.id, with_steps=False)
    assert run.status is RunStatus.QUEUED  # never marked running
    queues = {q.name: q for q in await store.queue_list(now=FAR)}
    assert queues["q-paused"].pause is not None and queues["q-paused"].held == 2
    assert queues["q-paused"].pause.paused_by == "alice"
    assert queues["other"].held == 1  # the paused function's item
    assert {(p.kind, p.target) for p in await store.pause_list()} == {
        ("queue", "q-paused"), ("function", "fn-paused")}

    assert await store.pause_clear(kind="queue", target="q-paused")
    assert not await store.pause_clear(kind="queue", target="q-paused")
    assert await _claimed_run_ids(store) == [held_q.id, later.id]  # earliest due first
    assert await store.pause_clear(kind="function", target="fn-paused")
    assert await _claimed_run_ids(store) == [held_f.id]


async def test_resume_starts_the_backlog_under_its_concurrency_limit(store: Any) -> None:
    flow = RunFlow(concurrency=[ConcurrencyLimit("queue:c", 2)])
    await store.pause_set(kind="queue", target="c", at=T0)
    ids = []
    for i in range(5):
        run = new_run(queue="c", created_at=at(i), flow=flow)
        await store.apply(Change(runs=[run]))
        ids.append(run.id)
    assert await _claimed_run_ids(store) == []
    await store.pause_clear(kind="queue", target="c")
    assert await _claimed_run_ids(store) == ids[:2]  # two slots, in order
    assert await _claimed_run_ids(store) == []


async def test_sweep_releases_items_no_pause_holds(store: Any) -> None:
    run = await create_run(store, queue="swept")
    await store.pause_set(kind="queue", target="swept", at=T0)
    assert await _claimed_run_ids(store) == []

    def drop(tx: Any) -> None:  # a pause row gone without its resume (e.g. by hand)
        tx.execute("DELETE FROM pauses WHERE target = 'swept'")
    await store._write(drop)
    assert await _claimed_run_ids(store) == []
    assert await store.pause_sweep() == 1
    assert await _claimed_run_ids(store) == [run.id]


async def test_audit_filters_cursor_and_pruning(store: Any) -> None:
    alice, cli = Actor("api_key", "k1", "alice"), Actor("cli", "root", "cli:root")
    entries = []
    for i, (actor, action, target, related) in enumerate([
            (alice, "run.cancel", "r1", None), (alice, "run.replay", "r2", "r3"),
            (cli, "key.create", "k9", None), (alice, "queue.pause", "emails", None)]):
        entry = AuditEntry(id=new_id(), at=at(i * 86400), actor=actor, action=action,
                           target_kind="run", target_id=target, related_id=related,
                           request_id=f"req-{i}", details={"i": i})
        await store.audit_insert(entry)
        entries.append(entry)

    async def ids(cursor: str | None = None, limit: int = 10, **kw: Any) -> list[str]:
        page = await store.audit_list(filter=AuditFilter(**kw), cursor=cursor, limit=limit)
        return [e.id for e in page.data]

    newest_first = [e.id for e in reversed(entries)]
    assert await ids() == newest_first
    assert await ids(action="run.cancel") == [entries[0].id]
    assert await ids(actor="alice") == [entries[3].id, entries[1].id, entries[0].id]
    assert await ids(actor="k1") == await ids(actor="alice")
    assert await ids(target_id="r3") == [entries[1].id]  # the replay's new run
    assert await ids(after=at(86400), before=at(3 * 86400)) == [entries[2].id,
                                                                 entries[1].id]
    page = await store.audit_list(filter=AuditFilter(), cursor=None, limit=3)
    assert page.next_cursor == entries[1].id
    assert await ids(cursor=page.next_cursor) == [entries[0].id]
    got = (await store.audit_list(filter=AuditFilter(action="run.replay"), cursor=None,
                                  limit=1)).data[0]
    assert got.actor == alice and got.details == {"i": 1} and got.request_id == "req-1"

    assert await store.audit_prune(before=at(2 * 86400), limit=500) == 2
    assert await ids() == newest_first[:2]


async def test_an_alert_change_is_recorded_once_with_its_notification(store: Any) -> None:
    def note() -> Any:
        return new_run(function_id="http", queue="offload.alerts", created_at=T0)

    healthy = await store.alert_transition(rule_id="r", rule_name="r", status="ok", value=0,
                                           message="fine", at=T0, notify=note())
    assert healthy is None  # a rule starts ok: nothing to say
    racers = await asyncio.gather(*[
        store.alert_transition(rule_id="r", rule_name="r", status="firing", value=1.0,
                               message="bad", at=at(1), notify=note()) for _ in range(5)])
    fired = [e for e in racers if e is not None]
    assert len(fired) == 1 and fired[0].status == "firing"
    assert await store.run_get(run_id=fired[0].run_id, with_steps=False) is not None
    assert await store.alert_transition(rule_id="r", rule_name="r", status="firing",
                                        value=2.0, message="still", at=at(2),
                                        notify=note()) is None
    resolved = await store.alert_transition(rule_id="r", rule_name="r", status="ok",
                                            value=0.0, message="fine", at=at(3),
                                            notify=note())
    assert resolved is not None and resolved.status == "resolved"
    assert [e.status for e in await store.alert_event_list(rule_id="r")] == [
        "resolved", "firing"]
    state = {s.rule_id: s for s in await store.alert_state_list()}["r"]
    assert state.status == "ok" and state.since == at(3)
    notes = await store.run_list(filter=RunFilter(queue="offload.alerts"), cursor=None,
                                 limit=50)
    assert len(notes.data) == 2  # one per change, none for the losers of the race


async def test_cron_missed_and_dead_letter_growth_are_measured(store: Any) -> None:
    from offload.engine.alerts import AlertRuleIn, measure

    created = T0 - timedelta(hours=3)
    app = App(id="app", url="http://127.0.0.1:9/api", sdk=None, framework=None,
              app_version=None, checksum="c", sync_error=None, synced_at=created,
              created_at=created, updated_at=created)
    config = {"triggers": [{"cron": "0 * * * *"}]}
    fn = Function(id="app-hourly", app_id="app", name="hourly", created_at=created,
                  updated_at=created, config=config, spec=load_function_config(config))
    await store.app_sync(app=app, functions=[fn])
    rule = AlertRuleIn(name="c", kind="cron_missed", function_id="app-hourly",
                       threshold=600, url="http://127.0.0.1:9/h")
    missed = await measure(store, rule, T0 + timedelta(minutes=15))
    assert missed.firing and "did not fire its tick of 2030-01-01T00:00:00" in missed.message
    early = await measure(store, rule, T0 + timedelta(minutes=5))  # within the grace:
    assert early.firing  # the 23:00 tick was missed too
    for hour in (1, 2, 3):
        await store.apply(Change(cron_tick=("app-hourly", T0 - timedelta(hours=hour) +
                                            timedelta(hours=1)),
                                 runs=[new_run(function_id="app-hourly", item=False)]))
    assert not (await measure(store, rule, T0 + timedelta(minutes=15))).firing
    assert (await measure(store, rule, T0 + timedelta(minutes=75))).firing

    growth = AlertRuleIn(name="d", kind="dead_letter_growth", function_id="dl", threshold=2,
                         window_s=600, url="http://127.0.0.1:9/h")
    for i in range(2):
        run = await create_run(store, function_id="dl", created_at=at(i))
        await store.run_cancel(run_id=run.id, at=at(10), error={"name": "x"})
    assert not (await measure(store, growth, at(20))).firing  # cancelled is not failed

    def fail(tx: Any) -> None:
        tx.execute("UPDATE runs SET status = 'failed' WHERE function_id = 'dl'")
    await store._write(fail)
    hit = await measure(store, growth, at(20))
    assert hit.firing and hit.value == 2.0
    assert not (await measure(store, growth, at(20 + 700))).firing  # out of the window


async def test_maintenance_prunes_the_audit_log_past_its_retention(store: Any) -> None:
    from offload.clock import now
    from offload.engine.maintenance import Maintenance

    old = AuditEntry(id=new_id(), at=now() - timedelta(days=100), actor=Actor("cli"),
                     action="key.create")
    recent = AuditEntry(id=new_id(), at=now() - timedelta(days=1), actor=Actor("cli"),
                        action="key.revoke")
    for entry in (old, recent):
        await store.audit_insert(entry)
    await Maintenance(store, retention=timedelta(days=7),
                      audit_retention=timedelta(days=90)).prune_once()
    page = await store.audit_list(filter=AuditFilter(), cursor=None, limit=10)
    assert [e.id for e in page.data] == [recent.id]

"""The engine: builds its services from Settings, starts them in order, stops them in reverse."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from offload import faults
from offload.clock import now
from offload.config import Settings, ensure_webhook_secret
from offload.engine.apps import AppSync
from offload.engine.identity import NodeIdentity
from offload.engine.runs import RunLifecycle
from offload.models import ItemKind, QueueItem
from offload.store import Store, open_store
from offload.store.base import Change, Fence
from offload.wakes import RunEnds

if TYPE_CHECKING:
    from offload.engine.catalog import FunctionCatalog
    from offload.engine.cron_service import CronService
    from offload.engine.executor import Executor
    from offload.engine.triggers import Triggers
    from offload.outbound.http import OutboundClient, Transport

log = logging.getLogger("offload.engine")


class Engine:
    """One engine process: a store, a scheduler and the handlers of each kind of work."""

    def __init__(self, settings: Settings, *, store: Store | None = None,
                 transport: Transport | None = None) -> None:
        self.settings = ensure_webhook_secret(settings)
        self.store = store or open_store(self.settings.resolved_database_url(),
                                         durable=not self.settings.dev)
        from offload.security.secrets import Vault, box_for

        self.vault = Vault(box_for(self.settings.secrets_key, dev=self.settings.dev,
                                   data_dir=self.settings.data_dir), self.store)
        """Stored secrets: sealed with the secrets key, opened at call time."""
        self.runs = RunLifecycle(self.store, others=RunEnds.from_env())
        """The run lifecycle: the only code that ends runs; wakes ``/wait`` callers."""
        self.client: OutboundClient | None = None
        self._transport = transport
        """Replaces the network for outbound calls (tests drive the engine in-process)."""
        self.started = False
        self._services: list[object] = []
        self.executor: Executor | None = None
        """Durable-function attempts (set by :func:`offload.engine.functions.attach`)."""
        self.triggers: Triggers | None = None
        """Event fan-out and wait timeouts."""
        self.cron: CronService | None = None
        self.functions: FunctionCatalog | None = None
        """The synced functions, cached briefly (set with the executor)."""
        self.identity = NodeIdentity(self.settings.data_dir, self.settings.node_id)
        """The node slot whose leases this process owns (taken back at start)."""

    async def start(self, *, run_scheduler: bool = True) -> None:
        """Open the store and start claiming work."""
        from offload.engine.http_tasks import HttpTasks
        from offload.engine.scheduler import Scheduler
        from offload.outbound.http import build_client
        from offload.outbound.ssrf import AddressPolicy

        await self.store.open()
        s = self.settings
        if self.vault.box is None and await self.store.secret_stored_count():
            from offload.errors import ConfigError

            raise ConfigError("secrets are stored but no secrets key is configured: set "
                              "OFFLOAD_SECRETS_KEY (or OFFLOAD_SECRETS_KEY_FILE) to the key "
                              "they were stored with")
        if run_scheduler:
            self.identity.acquire()
        faults.arm(s.test_crash_at)
        policy = AddressPolicy(allow_loopback=s.dev, allow_private=s.allow_private,
                               allow_list=s.outbound_allow)
        self.client = build_client(policy=policy, timeout_s=s.call_timeout_s,
                                   transport=self._transport)
        self.apps = AppSync(self.store, self.client, s)
        """App sync and resync (API, dashboard, CLI through the API)."""
        assert s.webhook_secret is not None
        self.http_tasks = HttpTasks(self.store, self.client, webhook_secret=s.webhook_secret,
                                    max_response_bytes=s.max_response_bytes,
                                    runs=self.runs, vault=self.vault)
        from offload.engine.bulk import BulkJobs

        self.bulk = BulkJobs(self.store, runs=self.runs)
        self.scheduler = Scheduler(
            self.store,
            {ItemKind.RUN: self._run_item, ItemKind.CALLBACK: self.http_tasks.deliver_callback,
             ItemKind.EVENT: self._event_item, ItemKind.WAIT_TIMEOUT: self._wait_timeout_item,
             ItemKind.BULK: self.bulk.process, ItemKind.RUN_TIMEOUT: self._timeout_item},
            max_inflight=s.max_inflight, lease=timedelta(seconds=s.lease_s),
            rescue_every=timedelta(seconds=s.rescue_every_s),
            max_expiries=s.max_lease_expiries, owner=self.identity.owner(),
            on_exhausted=self.runs.lease_exhausted)
        from offload.engine.maintenance import Maintenance

        self.maintenance = Maintenance(self.store,
                                       retention=timedelta(days=s.retention_days),
                                       audit_retention=timedelta(days=s.audit_retention_days))
        self._services.append(self.maintenance)
        from offload.engine.alerts import Alerts, settings_rules

        self.alerts = Alerts(self.store, declared=settings_rules(s.alert_rules),
                             every=timedelta(seconds=s.alert_every_s),
                             dashboard_url=f"{s.base_url}/alerts")
        self._services.append(self.alerts)
        from offload.engine.heartbeat import Heartbeat

        self._services.append(Heartbeat(self.store, self.scheduler.owner))
        self._build_extensions()
        if not run_scheduler and self.runs.others is not None:
            # An API front: wake its /wait callers when the executor ends their run.
            self.runs.others.listen(asyncio.get_running_loop(), self.runs.waiters.wake)
        if run_scheduler:
            await self._take_back_leases()
            await self.scheduler.start()
            for service in self._services:
                start = getattr(service, "start", None)
                if start is not None:
                    await start()
        self.started = True

    async def _take_back_leases(self) -> None:
        """Leases held under this node identity belong to a dead process: retry now."""
        prefix = self.identity.prefix
        if prefix is None:
            return
        at = now()
        taken = await self.store.lease_expire_owned(owner_prefix=prefix, now=at)
        if taken:
            await self.scheduler.rescue()  # exhausted runs are failed by engine.runs
            log.warning("leases of the previous process taken back",
                        extra={"items": taken, "node": prefix.rstrip("/")})

    def _build_extensions(self) -> None:
        """Durable functions: the executor, event triggers and cron."""
        from offload.engine.functions import attach

        attach(self)

    async def stop(self) -> None:
        """Stop claiming, let in-flight work finish briefly, close connections."""
        if not self.started:
            return
        for service in reversed(self._services):
            stop = getattr(service, "stop", None)
            if stop is not None:
                await stop()
        await self.scheduler.stop()
        if self.client is not None:
            await self.client.aclose()
        await self.store.close()
        if self.runs.others is not None:
            self.runs.others.close()
        self.identity.release()
        self.started = False

    # -- dispatch ------------------------------------------------------------------------

    async def _run_item(self, item: QueueItem) -> None:
        faults.crash_point("run.claimed", item.queue)
        # Carried with the claim; else batched: one query for the items of one claim.
        run = item.run if item.carried else await self.http_tasks.runs.get(item.run_id or "")
        fence = Fence(item.id, item.lease_token or "")
        if run is None or run.status.terminal:
            await self.store.apply(Change(fence=fence))
            return
        if run.function_id == "http":
            await self.http_tasks.run_attempt(item, run)
            return
        assert self.executor is not None
        await self.executor.run_attempt(item, run)

    async def _event_item(self, item: QueueItem) -> None:
        assert self.triggers is not None
        await self.triggers.fan_out(item)

    async def _wait_timeout_item(self, item: QueueItem) -> None:
        assert self.triggers is not None
        await self.triggers.time_out(item)

    async def _timeout_item(self, item: QueueItem) -> None:
        await self.runs.timeout_due(item)

    # -- run completion --------------------------------------------------------------------

    def notify_finished(self, run_id: str) -> None:
        """Wake callers waiting in ``/v1/runs/{id}/wait`` for this run."""
        self.runs.ended(run_id)

    async def wait_finished(self, run_id: str, timeout: float) -> None:
        """Return when this process sees ``run_id`` end, or after ``timeout`` seconds."""
        await self.runs.wait(run_id, timeout)

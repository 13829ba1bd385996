"""PgQueuer on PostgreSQL, library defaults (bench/peers.py); worker: ``pgq run
peers_pgqueuer:create``."""

from __future__ import annotations

import struct

import psycopg
from peers_common import PG_URL, record
from pgqueuer import PgQueuer
from pgqueuer.db import PsycopgDriver
from pgqueuer.models import Job


async def create() -> PgQueuer:
    conn = await psycopg.AsyncConnection.connect(PG_URL, autocommit=True)
    pgq = PgQueuer(PsycopgDriver(conn))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        record(struct.unpack("d", job.payload)[0] if job.payload else 0.0)

    return pgq


async def main() -> None:
    """The worker (``python peers_pgqueuer.py``): the ``pgq run`` CLI of this release
    fails to set up its logging, so the factory is run directly."""
    pgq = await create()
    await pgq.run()


if __name__ == "__main__":
    import asyncio

    asyncio.run(main())

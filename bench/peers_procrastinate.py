"""Procrastinate on PostgreSQL, library defaults (bench/peers.py)."""

import procrastinate
from peers_common import PG_URL, record

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=PG_URL))


@app.task(name="noop")
def noop(t: float) -> None:
    record(t)

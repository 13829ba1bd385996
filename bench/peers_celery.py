"""Celery on Redis, library defaults (bench/peers.py)."""

from celery import Celery
from peers_common import REDIS_URL, record

app = Celery("peers", broker=REDIS_URL)


@app.task
def noop(t: float) -> None:
    record(t)

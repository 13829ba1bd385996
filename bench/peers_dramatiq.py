"""Dramatiq on Redis, library defaults (bench/peers.py)."""

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from peers_common import REDIS_URL, record

broker = RedisBroker(url=REDIS_URL)
dramatiq.set_broker(broker)


@dramatiq.actor
def noop(t: float) -> None:
    record(t)

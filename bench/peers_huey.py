"""Huey on Redis, library defaults (bench/peers.py)."""

from huey import RedisHuey
from peers_common import REDIS_URL, record

huey = RedisHuey("peers", url=REDIS_URL)


@huey.task()
def noop(t: float) -> None:
    record(t)

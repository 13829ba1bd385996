"""What every peer job does (bench/peers.py): note that it ran, and how long after it was
enqueued it started, in Redis db PEERS_REDIS_DB (one pipelined round trip)."""

from __future__ import annotations

import os
import time
from typing import Any

REDIS_URL = os.environ.get("PEERS_REDIS_URL", "redis://127.0.0.1:6379/11")
PG_URL = os.environ.get("PEERS_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DONE = "peers:done"
LAT = "peers:lat"

_client: Any = None
_pid = 0


def _redis() -> Any:
    global _client, _pid
    if _client is None or _pid != os.getpid():  # after a fork: a connection of its own
        import redis

        _client = redis.Redis.from_url(REDIS_URL)
        _pid = os.getpid()
    return _client


def record(t: float) -> None:
    """The job's whole work: count it and push start − enqueue (ms) when ``t`` is set."""
    started = time.time()
    pipe = _redis().pipeline(transaction=False)
    pipe.incr(DONE)
    if t:
        pipe.rpush(LAT, (started - t) * 1000)
    pipe.execute()

"""Run-end wake-ups between processes (:mod:`offload.wakes`), within one process here."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
from pathlib import Path

from offload.wakes import RunEnds


async def test_a_run_end_reaches_every_other_listener_and_skips_dead_ones() -> None:
    with tempfile.TemporaryDirectory(prefix="offload-wt-") as d:
        directory = Path(d)
        loop = asyncio.get_running_loop()
        heard: asyncio.Queue[str] = asyncio.Queue()
        front = RunEnds(directory)
        front.listen(loop, heard.put_nowait)
        assert (directory / f"front-{os.getpid()}.sock").exists()
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        dead.bind(str(directory / "front-1.sock"))
        dead.close()  # the file stays, no one reads it: sending there must not raise
        executor = RunEnds(directory)
        executor.announce("run_a")
        executor.announce("run_b")
        got = {await asyncio.wait_for(heard.get(), 2), await asyncio.wait_for(heard.get(), 2)}
        assert got == {"run_a", "run_b"}
        # A process does not wake itself: had run_c reached the front's own socket, it
        # would be queued there before run_d (a unix datagram is queued when sent).
        front.announce("run_c")
        executor.announce("run_d")
        assert await asyncio.wait_for(heard.get(), 2) == "run_d"
        assert heard.empty()
        front.close()
        executor.close()
        assert not (directory / f"front-{os.getpid()}.sock").exists()

"""One process, ``--conns`` keep-alive connections sending ``POST /v1/tasks`` back to back
for ``--seconds``; prints the rate and p50. Used by bench/workers_ab.sh.

    .venv/bin/python bench/closedloop.py --port 8288 [--conns 32] [--seconds 5] [--api-key K]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rawhttp import RawConn, install_uvloop  # noqa: E402


async def main_async(args: argparse.Namespace) -> None:
    body = json.dumps({"url": "https://example.com/hook", "body": {"n": 1},
                       "delay": 3600}).encode()
    auth = b"Authorization: Bearer %s\r\n" % args.api_key.encode() if args.api_key else b""
    request = (b"POST %s HTTP/1.1\r\nHost: x\r\n%sContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (args.path.encode(), auth, len(body), body))
    done = 0
    lat: list[float] = []
    stop = time.perf_counter() + args.seconds

    async def worker() -> None:
        nonlocal done
        conn = await RawConn("127.0.0.1", args.port).connect()
        while time.perf_counter() < stop:
            t = time.perf_counter()
            status, answer = await conn.send_raw(request)
            lat.append(time.perf_counter() - t)
            if status not in (200, 202):
                raise RuntimeError(f"{status} {answer[:200]!r}")
            done += 1
        await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.conns)))
    lat.sort()
    print(f"{done / (time.perf_counter() - t0):.0f}/s p50 {lat[len(lat) // 2] * 1000:.2f}ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--conns", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--path", default="/v1/tasks")
    parser.add_argument("--api-key")
    args = parser.parse_args()
    install_uvloop()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()

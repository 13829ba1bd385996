"""One load-generator process: ``--conns`` keep-alive connections, each sending the
same request back to back (closed loop) until the window ends.

Several of these run at once (``run.py`` starts them with a common ``--start-at``
wall-clock time) so the client side is not limited to one core's event loop.
Only answers completed inside ``[start+warmup, start+warmup+duration)`` count.
Prints one JSON line: ``{"ok": n, "errors": n, "statuses": {...}, "lat_ms": [...]}``.
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


async def _worker(host: str, port: int, request: bytes, t0: float, t1: float, t2: float,
                  out: dict) -> None:
    conn = await RawConn(host, port).connect()
    try:
        while True:
            now = time.time()
            if now >= t2:
                return
            started = time.perf_counter()
            try:
                status, _ = await conn.send_raw(request)
            except (OSError, asyncio.IncompleteReadError, RuntimeError):
                out["errors"] += 1
                await conn.close()
                conn = await RawConn(host, port).connect()
                continue
            done = time.time()
            if t1 <= done < t2:
                out["statuses"][status] = out["statuses"].get(status, 0) + 1
                if 200 <= status < 300:
                    out["ok"] += 1
                    if len(out["lat_ms"]) < 20000:
                        out["lat_ms"].append((time.perf_counter() - started) * 1000)
                else:
                    out["errors"] += 1
    finally:
        await conn.close()


async def _main(args: argparse.Namespace) -> None:
    body = Path(args.body_file).read_bytes()
    proto = RawConn(args.host, args.port)
    request = proto.build("POST", args.path, body)
    if args.header:  # extra headers (e.g. Authorization) after the request line's Host
        extra = "".join(f"{h}\r\n" for h in args.header).encode()
        head, _, rest = request.partition(b"\r\n")
        request = head + b"\r\n" + extra + rest
    out: dict = {"ok": 0, "errors": 0, "statuses": {}, "lat_ms": []}
    t0 = args.start_at
    t1 = t0 + args.warmup
    t2 = t1 + args.duration
    delay = t0 - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    await asyncio.gather(*(_worker(args.host, args.port, request, t0, t1, t2, out)
                           for _ in range(args.conns)))
    sys.stdout.write(json.dumps(out) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/v1/tasks")
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--conns", type=int, default=16)
    parser.add_argument("--start-at", type=float, required=True)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--header", action="append", default=[],
                        help='An extra request header, "Name: value" (repeatable).')
    args = parser.parse_args()
    install_uvloop()
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()

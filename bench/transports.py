"""Candidate client transports, one call at a time, against one server (how the client's
transport was chosen; bench/RESULTS.md "Client transport").

    .venv/bin/python bench/target.py --port 9311 &
    .venv/bin/python bench/transports.py 9311 [calls]

Three interleaved rounds of ``calls`` (2000) sequential ``POST /hit`` with a small JSON
body on one keep-alive connection each, encode and decode included; prints each
transport's p50 per round. Async ones run on the default asyncio loop.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from rawhttp import RawConn  # noqa: E402

from offload.client_http import AsyncTransport, Endpoint, SyncTransport  # noqa: E402

PORT = int(sys.argv[1])
N = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
URL = f"http://127.0.0.1:{PORT}"
TASK = {"url": "http://127.0.0.1:1/hit", "delay": 3600}
BODY = json.dumps(TASK).encode()


def p50(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2] * 1000


async def raw_async() -> list[float]:
    c = await RawConn("127.0.0.1", PORT).connect()
    req = c.build("POST", "/hit", BODY)
    out = []
    for _ in range(N):
        t = time.perf_counter()
        await c.send_raw(req)
        out.append(time.perf_counter() - t)
    await c.close()
    return out


async def httpx_async() -> list[float]:
    async with httpx.AsyncClient(base_url=URL) as c:
        out = []
        for _ in range(N):
            t = time.perf_counter()
            (await c.post("/hit", json=TASK)).json()
            out.append(time.perf_counter() - t)
    return out


async def aiohttp_async() -> list[float]:
    async with aiohttp.ClientSession(URL) as s:
        out = []
        for _ in range(N):
            t = time.perf_counter()
            async with s.post("/hit", data=json.dumps(TASK),
                              headers={"content-type": "application/json"}) as r:
                json.loads(await r.read())
            out.append(time.perf_counter() - t)
    return out


async def offload_async() -> list[float]:
    tr = AsyncTransport(Endpoint(URL, None), timeout=30, retries=0)
    out = []
    for _ in range(N):
        t = time.perf_counter()
        _, body = await tr.request("POST", "/hit", json.dumps(TASK).encode(), timeout=30,
                                   safe=False)
        json.loads(body)
        out.append(time.perf_counter() - t)
    await tr.close()
    return out


def offload_sync() -> list[float]:
    tr = SyncTransport(Endpoint(URL, None), timeout=30, retries=0)
    out = []
    for _ in range(N):
        t = time.perf_counter()
        _, body = tr.request("POST", "/hit", json.dumps(TASK).encode(), timeout=30,
                             safe=False)
        json.loads(body)
        out.append(time.perf_counter() - t)
    tr.close()
    return out


def stdlib_http_client() -> list[float]:
    c = http.client.HTTPConnection("127.0.0.1", PORT)
    out = []
    for _ in range(N):
        t = time.perf_counter()
        c.request("POST", "/hit", body=json.dumps(TASK),
                  headers={"Content-Type": "application/json"})
        json.loads(c.getresponse().read())
        out.append(time.perf_counter() - t)
    return out


def urllib3_pool() -> list[float]:
    p = urllib3.HTTPConnectionPool("127.0.0.1", PORT, maxsize=1)
    out = []
    for _ in range(N):
        t = time.perf_counter()
        r = p.request("POST", "/hit", body=json.dumps(TASK),
                      headers={"Content-Type": "application/json"})
        json.loads(r.data)
        out.append(time.perf_counter() - t)
    return out


def httpx_blocking() -> list[float]:
    with httpx.Client(base_url=URL) as c:
        out = []
        for _ in range(N):
            t = time.perf_counter()
            c.post("/hit", json=TASK).json()
            out.append(time.perf_counter() - t)
    return out


def raw_blocking() -> list[float]:
    s = socket.create_connection(("127.0.0.1", PORT))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req = (b"POST /hit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
    f = s.makefile("rb")
    out = []
    for _ in range(N):
        t = time.perf_counter()
        s.sendall(req)
        n = 0
        while (line := f.readline()) != b"\r\n":
            if line.lower().startswith(b"content-length"):
                n = int(line.split(b":")[1])
        f.read(n)
        out.append(time.perf_counter() - t)
    s.close()
    return out


def main() -> None:
    asyncs: list[tuple[str, Callable[[], Awaitable[list[float]]]]] = [
        ("raw (asyncio)", raw_async), ("httpx async", httpx_async), ("aiohttp", aiohttp_async),
        ("offload async", offload_async)]
    blocking: list[tuple[str, Callable[[], list[float]]]] = [
        ("raw (socket)", raw_blocking), ("http.client", stdlib_http_client),
        ("urllib3", urllib3_pool), ("httpx blocking", httpx_blocking),
        ("offload sync", offload_sync)]
    res: dict[str, list[float]] = {}
    for _ in range(3):
        for name, afn in asyncs:
            res.setdefault(name, []).append(p50(asyncio.run(afn())))
        for name, fn in blocking:
            res.setdefault(name, []).append(p50(fn()))
    for name, values in res.items():
        print(f"{name:15s} p50 ms per round: {' '.join(f'{v:.3f}' for v in values)}")


if __name__ == "__main__":
    main()

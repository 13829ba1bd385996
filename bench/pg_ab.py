"""Two source trees of the engine on PostgreSQL, interleaved: sequential ack p50, engine
CPU per task (ingest + the call to a no-op target) and 16-connection throughput.

    .venv/bin/python bench/target.py --port 9312 &
    .venv/bin/python bench/pg_ab.py BEFORE_SRC AFTER_SRC [rounds]

Each tree runs as ``offload dev`` on a fresh database; tasks have no delay, so every
ingest wakes the engines (NOTIFY) and the task runs against the target at once.
"""
import asyncio
import json
import os
import secrets
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import psycopg  # noqa: E402
import run as runner  # noqa: E402
from rawhttp import RawConn  # noqa: E402

TREES = {"before": sys.argv[1], "after": sys.argv[2]}
BODY = json.dumps({"url": "http://127.0.0.1:9312/hit", "body": {"n": 1}}).encode()


async def sequential(port: int, n: int) -> float:
    conn = await RawConn("127.0.0.1", port).connect()
    request = conn.build("POST", "/v1/tasks", BODY)
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        status, answer = await conn.send_raw(request)
        lat.append(time.perf_counter() - t)
        assert status == 202, answer
    await conn.close()
    return statistics.median(lat) * 1000


async def drive(port: int, n: int, conns: int) -> float:
    async def worker() -> None:
        conn = await RawConn("127.0.0.1", port).connect()
        request = conn.build("POST", "/v1/tasks", BODY)
        for _ in range(n):
            status, answer = await conn.send_raw(request)
            assert status == 202, answer
        await conn.close()

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conns)))
    return n * conns / (time.perf_counter() - t)


async def one(tree: str) -> tuple[float, float, float]:
    data = Path(f"/tmp/pg_ab_{tree}")
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir()
    db = f"pg_ab_{secrets.token_hex(3)}"
    with psycopg.connect(runner.PG_ADMIN_URL, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {db}")
    port = runner.free_port()
    argv = [sys.executable, "-m", "offload", "dev", "--port", str(port), "--data-dir",
            str(data), "--database-url", f"{runner.PG_ADMIN_URL.rsplit('/', 1)[0]}/{db}"]
    env = dict(os.environ, PYTHONPATH=TREES[tree], OFFLOAD_LOG_LEVEL="warning")
    proc = runner.Proc(tree, argv, port, data, cwd=data, extra_env=env)
    try:
        await proc.ready("/readyz")
        await drive(port, 50, 4)
        cpu0 = proc.cpu()
        p50 = await sequential(port, 600)
        cpu = (proc.cpu() - cpu0) * 1000 / 600
        rate = await drive(port, 150, 16)
    finally:
        proc.stop()
        with psycopg.connect(runner.PG_ADMIN_URL, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    return p50, cpu, rate


async def main() -> None:
    res: dict[str, list[tuple[float, float, float]]] = {k: [] for k in TREES}
    for rep in range(int(sys.argv[3]) if len(sys.argv) > 3 else 3):
        for tree in TREES:
            r = await one(tree)
            res[tree].append(r)
            print(f"round {rep} {tree}: seq p50 {r[0]:.3f} ms, engine CPU {r[1]:.3f} ms/task, "
                  f"c16 {r[2]:.0f}/s (load {os.getloadavg()[0]:.1f})", flush=True)
    for tree, v in res.items():
        p50, cpu, rate = (statistics.median(x[i] for x in v) for i in range(3))
        print(f"{tree}: median seq p50 {p50:.3f} ms, CPU {cpu:.3f} ms/task, c16 {rate:.0f}/s")


if __name__ == "__main__":
    asyncio.run(main())

"""offload.Client and offload.AsyncClient against a real `offload serve` with an API key.

Covers the keep-alive transports (reuse after the server closed an idle connection),
the batching producer (`enqueue`: one batch request, per-task errors, flushed on close),
and retries: a request whose answer is lost is repeated only when it carries an
idempotency key, and then gives back the same run.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from offload import AsyncClient, Client, ClientError
from tests.support.engine import EngineProcess, free_port
from tests.support.settled import server_closed_our_connections

API_KEY = "ofk_admin_clienttest0123456789"


@pytest.fixture(scope="module")
def engine(module_store_url: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[EngineProcess]:
    proc = EngineProcess(tmp_path_factory.mktemp("engine"), database_url=module_store_url,
                         mode="serve", env={"OFFLOAD_API_KEYS": API_KEY})
    proc.start(timeout=60)
    yield proc
    proc.kill()


TARGET = "https://example.com/hook"


def test_blocking_client_round_trip_and_errors(engine: EngineProcess) -> None:
    with Client(engine.url, api_key=API_KEY) as client:
        run = client.create_task(TARGET, body={"n": 1}, delay=3600, queue="client-sync")
        assert run["status"] == "queued" and run["outcome"] == "created"
        got = client.get_run(run["id"])
        assert got["id"] == run["id"]
        assert client.list_runs(queue="client-sync")["data"][0]["id"] == run["id"]
        batch = client.create_tasks([{"url": TARGET, "delay": 3600}] * 3)
        assert len(batch["data"]) == 3
        with pytest.raises(ClientError) as info:
            client.create_task("ftp://example.com/x")
        assert info.value.status == 422
        assert info.value.body["errors"][0]["field"] == "body.url"
        with pytest.raises(ClientError) as missing:
            client.get_run("01HZZZZZZZZZZZZZZZZZZZZZZZ")
        assert missing.value.status == 404
    with Client(engine.url, api_key="ofk_admin_wrong") as client, \
            pytest.raises(ClientError) as denied:
        client.create_task(TARGET)
    assert denied.value.status == 401


def test_bodiless_posts_cancel_and_replay(engine: EngineProcess) -> None:
    with Client(engine.url, api_key=API_KEY) as client:
        run = client.create_task(TARGET, delay=3600, queue="client-cancel")
        assert client.cancel_run(run["id"])["status"] == "cancelled"
        assert client.get_run(run["id"])["status"] == "cancelled"
        again = client.replay_run(run["id"])
        assert again["id"] != run["id"]


async def test_async_bodiless_post_cancels(engine: EngineProcess) -> None:
    async with AsyncClient(engine.url, api_key=API_KEY) as client:
        run = await client.create_task(TARGET, delay=3600)
        assert (await client.cancel_run(run["id"]))["status"] == "cancelled"


def test_blocking_client_survives_the_server_closing_idle_connections(
        engine: EngineProcess) -> None:
    with Client(engine.url, api_key=API_KEY) as client:
        first = client.create_task(TARGET, delay=3600)
        # uvicorn closes a connection idle for 5 s: wait until it has closed ours
        server_closed_our_connections(engine.port)
        second = client.create_task(TARGET, delay=3600)
        assert first["id"] != second["id"]


def test_blocking_client_from_many_threads(engine: EngineProcess) -> None:
    ids: list[str] = []
    with Client(engine.url, api_key=API_KEY) as client:
        def work() -> None:
            for _ in range(20):
                ids.append(client.create_task(TARGET, delay=3600)["id"])

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(set(ids)) == 160


def test_enqueue_batches_and_settles_each_task(engine: EngineProcess) -> None:
    with Client(engine.url, api_key=API_KEY, batch_linger=0.05) as client:
        futures = [client.enqueue(TARGET, delay=3600, queue="client-batch") for _ in range(40)]
        bad = client.enqueue("ftp://example.com/x")
        futures += [client.enqueue(TARGET, delay=3600, queue="client-batch")
                    for _ in range(9)]
        answers = [f.result(30) for f in futures]
        with pytest.raises(ClientError) as info:
            bad.result(30)
    assert info.value.status == 422
    assert [e["field"] for e in info.value.body["errors"]] == ["body.url"]
    assert len({a["id"] for a in answers}) == 49
    # One batch request: the runs of one batch share their created_at.
    assert len({a["created_at"] for a in answers}) <= 2


def test_enqueue_is_flushed_on_close(engine: EngineProcess) -> None:
    client = Client(engine.url, api_key=API_KEY, batch_linger=30.0)
    futures = [client.enqueue(TARGET, delay=3600, queue="client-close") for _ in range(5)]
    assert not any(f.done() for f in futures)
    client.close()
    assert all(f.result(0)["status"] == "queued" for f in futures)


async def test_async_client_round_trip_concurrency_and_enqueue(engine: EngineProcess) -> None:
    async with AsyncClient(engine.url, api_key=API_KEY) as client:
        runs = await asyncio.gather(*(client.create_task(TARGET, delay=3600, queue="client-a")
                                      for _ in range(50)))
        assert len({r["id"] for r in runs}) == 50
        got = await client.get_run(runs[0]["id"])
        assert got["id"] == runs[0]["id"]
        with pytest.raises(ClientError) as info:
            await client.create_task(TARGET, retries=99)
        assert info.value.body["errors"][0]["field"] == "body.retries"
        enqueued = [client.enqueue(TARGET, delay=3600) for _ in range(30)]
        bad = client.enqueue(TARGET, retries=-1)
        answers = await asyncio.gather(*enqueued)
        assert len({a["created_at"] for a in answers}) <= 2
        with pytest.raises(ClientError):
            await bad
        late = [client.enqueue(TARGET, delay=3600) for _ in range(3)]
    assert all(f.result()["status"] == "queued" for f in late)  # flushed by aclose


async def test_async_client_survives_idle_close(engine: EngineProcess) -> None:
    async with AsyncClient(engine.url, api_key=API_KEY) as client:
        await client.create_task(TARGET, delay=3600)
        await asyncio.to_thread(server_closed_our_connections, engine.port)
        await client.create_task(TARGET, delay=3600)


# -- retries -----------------------------------------------------------------------------


class AnswerEater:
    """A loopback proxy that forwards each request to the engine but, for the first
    ``eat`` connections, drops the answer and resets the connection (the request was
    committed; the client never hears so)."""

    def __init__(self, upstream_port: int, eat: int) -> None:
        self.port = free_port()
        self.upstream_port = upstream_port
        self.eat = eat
        self.seen = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> AnswerEater:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _shutdown(self) -> None:
        self._server.close()
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.seen += 1
        eat = self.seen <= self.eat
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                up_writer.write(head + body)
                answer_head = await up_reader.readuntil(b"\r\n\r\n")
                n = 0
                for line in answer_head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        n = int(line.split(b":")[1])
                answer = await up_reader.readexactly(n)
                if eat:
                    writer.transport.abort()
                    return
                writer.write(answer_head + answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            up_writer.transport.abort()
            writer.transport.abort()


def test_lost_answer_is_retried_only_with_an_idempotency_key(engine: EngineProcess) -> None:
    with AnswerEater(engine.port, eat=1) as proxy, \
            Client(f"http://127.0.0.1:{proxy.port}", api_key=API_KEY) as client, \
            pytest.raises(ConnectionError):
        client.create_task(TARGET, delay=3600)  # committed, but no key: not repeated
    with AnswerEater(engine.port, eat=2) as proxy, \
            Client(f"http://127.0.0.1:{proxy.port}", api_key=API_KEY) as client:
        run = client.create_task(TARGET, delay=3600, idempotency_key="client-retry-1")
        assert proxy.seen == 3
        assert run["outcome"] == "duplicate"  # the first attempt's run, found by its key
    with Client(engine.url, api_key=API_KEY) as client:
        assert client.create_task(TARGET, idempotency_key="client-retry-1")["id"] == run["id"]


async def test_async_lost_answer_retried_with_key(engine: EngineProcess) -> None:
    with AnswerEater(engine.port, eat=1) as proxy:
        async with AsyncClient(f"http://127.0.0.1:{proxy.port}", api_key=API_KEY) as client:
            with pytest.raises(ConnectionError):
                await client.create_task(TARGET, delay=3600)
    with AnswerEater(engine.port, eat=1) as proxy:
        async with AsyncClient(f"http://127.0.0.1:{proxy.port}", api_key=API_KEY) as client:
            run = await client.create_task(TARGET, delay=3600, idempotency_key="client-retry-2")
            assert run["outcome"] == "duplicate" and proxy.seen == 2


def test_connection_refused_is_retried_until_the_engine_is_up(tmp_path: Path) -> None:
    port = free_port()
    late = EngineProcess(tmp_path, mode="serve", port=port,
                         env={"OFFLOAD_API_KEYS": API_KEY})
    starter = threading.Timer(0.2, late.start)
    starter.start()
    try:
        with Client(late.url, api_key=API_KEY, retries=40) as client:
            run = client.create_task(TARGET, delay=3600)  # no key: nothing was ever sent
        assert run["status"] == "queued"
    finally:
        starter.join()
        late.kill()

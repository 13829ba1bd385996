"""Apps and functions: sync replaces the function set atomically."""

from __future__ import annotations

from typing import Any

from offload.models import App, Function
from offload.protocol.function_config import load_function_config

from .conftest import at


def _app(app_id: str = "app", checksum: str = "c1", url: str = "http://app/api",
         t: float = 0) -> App:
    return App(id=app_id, url=url, sdk="py:1", framework="fastapi", app_version="1.0",
               checksum=checksum, sync_error=None, synced_at=at(t), created_at=at(0),
               updated_at=at(t))


def _fn(fn_id: str, app_id: str = "app", config: dict[str, Any] | None = None) -> Function:
    config = config or {"triggers": []}
    return Function(id=fn_id, app_id=app_id, name=fn_id.split("-")[-1], config=config,
                    spec=load_function_config(config), created_at=at(0), updated_at=at(0))


async def test_app_sync__inserts_app_and_functions(store: Any) -> None:
    assert await store.app_sync(app=_app(), functions=[_fn("app-a"), _fn("app-b")]) is True
    app = await store.app_get(app_id="app")
    assert app == _app()
    assert [f.id for f in await store.function_list(app_id="app")] == ["app-a", "app-b"]
    assert await store.function_get(function_id="app-a") == _fn("app-a")
    assert await store.app_list() == [_app()]


async def test_app_sync__unchanged_returns_false(store: Any) -> None:
    await store.app_sync(app=_app(), functions=[_fn("app-a")])
    assert await store.app_sync(app=_app(t=10), functions=[_fn("app-a")]) is False
    app = await store.app_get(app_id="app")
    assert app is not None and app.synced_at == at(10)


async def test_app_sync__replaces_function_set(store: Any) -> None:
    await store.app_sync(app=_app(), functions=[_fn("app-a"), _fn("app-b")])
    await store.app_sync(app=_app("other"), functions=[_fn("other-x", "other")])
    changed = await store.app_sync(
        app=_app(checksum="c2"),
        functions=[_fn("app-b", config={"v": 2}), _fn("app-c")])
    assert changed is True
    assert [f.id for f in await store.function_list(app_id="app")] == ["app-b", "app-c"]
    assert await store.function_get(function_id="app-a") is None
    b = await store.function_get(function_id="app-b")
    assert b is not None and b.config == {"v": 2}
    assert [f.id for f in await store.function_list()] == ["app-b", "app-c", "other-x"]
    # an empty set removes every function of the app
    assert await store.app_sync(app=_app(checksum="c3"), functions=[]) is True
    assert await store.function_list(app_id="app") == []
    assert [f.id for f in await store.function_list()] == ["other-x"]


async def test_app_sync__url_change_is_a_change(store: Any) -> None:
    await store.app_sync(app=_app(), functions=[_fn("app-a")])
    assert await store.app_sync(app=_app(url="http://moved/api"), functions=[]) is True
    app = await store.app_get(app_id="app")
    assert app is not None and app.url == "http://moved/api"


async def test_app_sync__failure_leaves_old_set(store: Any) -> None:
    await store.app_sync(app=_app(), functions=[_fn("app-a"), _fn("app-b")])
    bad = Function(id="app-c", app_id="app", name="c", config={"x": {1, 2}},  # not JSON
                   spec=load_function_config({}), created_at=at(0), updated_at=at(0))
    try:
        await store.app_sync(app=_app(checksum="c2"), functions=[_fn("app-d"), bad])
    except Exception:  # noqa: BLE001, S110 - any failure; the point is atomicity
        pass
    else:
        raise AssertionError("unserialisable config accepted")
    assert [f.id for f in await store.function_list(app_id="app")] == ["app-a", "app-b"]
    app = await store.app_get(app_id="app")
    assert app is not None and app.checksum == "c1"


async def test_app_set_sync_error(store: Any) -> None:
    await store.app_sync(app=_app(), functions=[])
    await store.app_set_sync_error(app_id="app", error="connection refused", at=at(5))
    app = await store.app_get(app_id="app")
    assert app is not None and app.sync_error == "connection refused"
    assert app.updated_at == at(5)
    await store.app_sync(app=_app(checksum="c2"), functions=[])
    app = await store.app_get(app_id="app")
    assert app is not None and app.sync_error is None


async def test_app_delete__removes_app_and_functions(store: Any) -> None:
    await store.app_sync(app=_app(), functions=[_fn("app-a")])
    assert await store.app_delete(app_id="app") is True
    assert await store.app_get(app_id="app") is None
    assert await store.function_list() == []
    assert await store.app_delete(app_id="app") is False
    assert await store.app_get(app_id="missing") is None


async def test_function_reads__share_one_parsed_config_per_version(store: Any) -> None:
    config = {"triggers": [{"event": "a"}],
              "steps": {"step": {"runtime": {"url": "http://app/api?fnId=app-p"},
                                 "retries": {"attempts": 2}}}}
    await store.app_sync(app=_app(), functions=[_fn("app-p", config=config)])
    first = await store.function_get(function_id="app-p")
    listed = await store.function_list(app_id="app")
    assert first is not None and first.spec.retries == 2
    assert listed[0].spec is first.spec  # read twice, parsed once
    changed = {**config, "steps": {"step": {**config["steps"]["step"],
                                            "retries": {"attempts": 5}}}}
    await store.app_sync(app=_app(checksum="c2"), functions=[_fn("app-p", config=changed)])
    again = await store.function_get(function_id="app-p")
    assert again is not None and again.spec.retries == 5 and again.spec is not first.spec

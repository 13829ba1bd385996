"""An in-process app (``offload dev`` settings, SQLite in a temp dir) for the fuzz suite.

The scheduler does not run: fuzzing checks what the API accepts and writes, and a
fuzzed task that happens to be valid must not make a real outbound call.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import pytest

with warnings.catch_warnings():  # starlette prefers httpx2; httpx works the same here
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from offload.app import create_app
from offload.config import from_env
from tests.fuzz.helpers import all_run_ids


@pytest.fixture(scope="module")
def database_url(module_store_url: str) -> str:
    """Each store in turn, one database for the whole module."""
    return module_store_url


@pytest.fixture(scope="module")
def client(database_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = from_env({}, mode="dev", data_dir=tmp_path_factory.mktemp("offload"),
                        database_url=database_url)
    app = create_app(settings, run_scheduler=False)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def run_ids(client: TestClient) -> Callable[[], set[str]]:
    """A function listing every run id in the store."""
    return lambda: all_run_ids(client)

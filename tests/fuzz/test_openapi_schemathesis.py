"""schemathesis against ``/openapi.json``: every ``/v1`` operation, generated input.

Promise (DESIGN.md §4, docs/guarantees.md; research §B.6 Z1): no input makes the API
answer 5xx, and answers match the published schema. The tasks and runs operations
(this layer's) are held to every schemathesis check; operations of other layers are
held to "no 5xx" until their routers document their error bodies.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from offload.api.app import create_app
from offload.config import from_env

FULLY_CHECKED = ("/v1/tasks", "/v1/runs")


def _load_schema() -> Any:
    # SQLite in a temp dir, no scheduler: generated tasks are stored, never called.
    # Loaded at import (schemathesis's lazy fixture loader does not work with pytest 9).
    data_dir = Path(tempfile.mkdtemp(prefix="offload-schemathesis-"))
    atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
    app = create_app(from_env({}, mode="dev", data_dir=data_dir), run_scheduler=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = _load_schema().include(path_regex=r"^/v1/")


@schema.parametrize()
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_v1_operation(case: schemathesis.Case) -> None:
    path = case.operation.path
    if path.startswith(FULLY_CHECKED):
        case.call_and_validate()
        return
    response = case.call()
    assert response.status_code < 500, f"{case.method} {path}: {response.status_code}"
    _ = (content_type_conformance, response_schema_conformance, status_code_conformance)

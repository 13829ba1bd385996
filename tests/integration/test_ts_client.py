"""The TypeScript client (clients/typescript) under Node against a real engine, both stores.

The engine runs as ``offload dev`` with a known webhook secret; ``node --test`` runs the
package's tests (its built ESM and CJS outputs) with OFFLOAD_URL pointing at it. A vector
signed by offload's own Python signer checks that verifyWebhook accepts what the engine
produces byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from offload.outbound.webhooks import generate_secret, sign_headers
from tests.support.engine import EngineProcess

pytestmark = [pytest.mark.node, pytest.mark.slow]

PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "typescript"
API_KEY = "ofk_admin_ts-client-test-key-0123456789"


def _require_built() -> None:
    problem = None
    if shutil.which("node") is None:
        problem = "node is not installed"
    elif not (PACKAGE / "dist" / "esm" / "index.js").exists() or \
            not (PACKAGE / "dist" / "cjs" / "index.js").exists():
        problem = "clients/typescript is not built: run scripts/services (npm ci builds it)"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(f"SKIPPING TYPESCRIPT CLIENT TESTS — {problem}")


def _python_vector(secret: str) -> str:
    body = json.dumps({"run_id": "01JPYTHON", "status": "completed", "note": "héllo"})
    headers = sign_headers(secret, msg_id="msg_python", body=body.encode(),
                           timestamp=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
    return json.dumps({"secret": secret, "headers": headers, "body": body})


def test_typescript_client_against_engine(tmp_path: Path, store_url: str) -> None:
    _require_built()
    secret = generate_secret()
    with EngineProcess(tmp_path / "engine", database_url=store_url,
                       env={"OFFLOAD_WEBHOOK_SECRET": secret}) as engine:
        env = {**os.environ, "OFFLOAD_URL": engine.url, "OFFLOAD_WEBHOOK_SECRET": secret,
               "OFFLOAD_TEST_SIGNED": _python_vector(secret)}
        env.pop("OFFLOAD_API_KEY", None)
        _node_tests(engine, env, "engine.test.mjs", "webhooks.test.mjs", "types.test.mjs")


def test_typescript_client_with_api_key(tmp_path: Path) -> None:
    """Against ``offload serve``: the key is sent, a missing or wrong key is a 401."""
    _require_built()
    secret = generate_secret()
    with EngineProcess(tmp_path / "engine", mode="serve",
                       env={"OFFLOAD_WEBHOOK_SECRET": secret, "OFFLOAD_API_KEYS": API_KEY,
                            "OFFLOAD_OUTBOUND_ALLOW": "127.0.0.0/8"}) as engine:
        env = {**os.environ, "OFFLOAD_URL": engine.url, "OFFLOAD_API_KEY": API_KEY,
               "OFFLOAD_WEBHOOK_SECRET": secret}
        _node_tests(engine, env, "auth.test.mjs")


def _node_tests(engine: EngineProcess, env: dict[str, str], *files: str) -> None:
    proc = subprocess.run(["node", "--test", "--test-reporter=spec",
                           *(f"test/{name}" for name in files)],
                          cwd=PACKAGE, env=env, capture_output=True, text=True,
                          timeout=180, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{output[-6000:]}\n--- engine log ---\n{engine.logs()}"
    assert "ℹ fail 0" in output, output[-3000:]
    assert "ℹ skipped 0" in output, output[-3000:]  # e.g. the Python vector really ran

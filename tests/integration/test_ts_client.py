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
        proc = subprocess.run(["node", "--test", "--test-reporter=spec", "test/"],
                              cwd=PACKAGE, env=env, capture_output=True, text=True,
                              timeout=180, check=False)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{output[-6000:]}\n--- engine log ---\n{engine.logs()}"
        assert "# fail 0" in output or "ℹ fail 0" in output, output[-3000:]
        assert "skipped 0" in output, output[-3000:]  # the Python vector really ran

"""`offload serve` refuses to run open; keys from `offload keys create` work with scopes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.engine import EngineProcess, free_port
from tests.support.poll import eventually


def offload(*args: str, data_dir: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    return subprocess.run([sys.executable, "-m", "offload", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_serve_refuses_to_start_without_keys(tmp_path: Path) -> None:
    out = offload("serve", "--port", str(free_port()), data_dir=tmp_path, timeout=30)
    assert out.returncode != 0
    assert "no API keys" in out.stderr and "--insecure" in out.stderr


def test_migrate_then_keys_with_scopes_guard_the_api(tmp_path: Path) -> None:
    migrated = offload("migrate", data_dir=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    admin = offload("keys", "create", "--scope", "admin", "--name", "ops", data_dir=tmp_path)
    ingest = offload("keys", "create", "--scope", "ingest", data_dir=tmp_path)
    assert admin.returncode == 0 and ingest.returncode == 0, admin.stderr + ingest.stderr
    admin_key = admin.stdout.strip().splitlines()[-1]
    ingest_key = ingest.stdout.strip().splitlines()[-1]
    assert admin_key.startswith("ofk_admin_") and ingest_key.startswith("ofk_ingest_")
    listed = offload("keys", "list", data_dir=tmp_path).stdout
    assert "ops" in listed and admin_key not in listed  # secrets are shown once only

    engine = EngineProcess(tmp_path, mode="serve").start()
    try:
        task = {"url": "https://example.com/hook", "delay": 3600}
        anonymous = httpx.post(f"{engine.url}/v1/tasks", json=task)
        assert anonymous.status_code == 401 and anonymous.json()["code"] == "unauthorized"
        bad = httpx.post(f"{engine.url}/v1/tasks", json=task,
                         headers={"Authorization": "Bearer ofk_admin_nope"})
        assert bad.status_code == 401
        as_ingest = {"Authorization": f"Bearer {ingest_key}"}
        created = httpx.post(f"{engine.url}/v1/tasks", json=task, headers=as_ingest)
        assert created.status_code == 202, created.text
        forbidden = httpx.get(f"{engine.url}/v1/runs", headers=as_ingest)
        assert forbidden.status_code == 403 and forbidden.json()["code"] == "forbidden"
        as_admin = {"Authorization": f"Bearer {admin_key}"}
        runs = httpx.get(f"{engine.url}/v1/runs", headers=as_admin)
        assert runs.status_code == 200 and runs.json()["data"][0]["id"] == created.json()["id"]
        assert httpx.get(f"{engine.url}/healthz").status_code == 200  # probes stay open

        key_id = next(line.split()[0] for line in listed.splitlines() if "ops" in line)
        revoked = offload("keys", "revoke", key_id, data_dir=tmp_path)
        assert revoked.returncode == 0, revoked.stderr
        eventually(lambda: httpx.get(f"{engine.url}/v1/runs", headers=as_admin).status_code
                   == 401, timeout=10, interval=0.2,
                   what="the revoked key to stop working (cache is 5 s)")
    finally:
        engine.kill()

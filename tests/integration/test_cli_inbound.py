"""``offload secrets`` and ``offload webhooks`` against a real engine process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.engine import EngineProcess

VALUE = "cli-secret-value-0f3a9"


def offload(url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    env.update(OFFLOAD_URL=url, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "offload", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, env=env)


def test_secrets_and_webhooks_commands(tmp_path: Path) -> None:
    with EngineProcess(tmp_path) as engine:
        stored = offload(engine.url, "secrets", "set", "CLI_KEY", "--from-stdin",
                         stdin=VALUE + "\n")
        assert stored.returncode == 0, stored.stderr
        assert "{{ secrets.CLI_KEY }}" in stored.stdout and VALUE not in stored.stdout
        listed = offload(engine.url, "secrets", "list")
        assert "CLI_KEY" in listed.stdout and VALUE not in listed.stdout
        bad = offload(engine.url, "secrets", "set", "bad-name", "x")
        assert bad.returncode != 0 and "path.name" in bad.stderr

        created = offload(engine.url, "webhooks", "create", "billing", "--kind", "stripe",
                          "--secret", "whsec_cli_test", "--forward-url",
                          "http://127.0.0.1:9/hook", "--forward-header",
                          "X-Token: {{ secrets.CLI_KEY }}")
        assert created.returncode == 0, created.stderr
        assert "url /w/" in created.stdout and "stripe/{{ type }}" in created.stdout
        assert "whsec_cli_test" not in created.stdout
        generated = offload(engine.url, "webhooks", "create", "gh", "--kind", "github")
        assert "secret (shown once): whsec_" in generated.stdout
        listed = offload(engine.url, "webhooks", "list")
        assert "billing" in listed.stdout and "gh" in listed.stdout
        assert "whsec_cli_test" not in listed.stdout
        hooks = httpx.get(f"{engine.url}/v1/webhooks").json()["data"]
        billing = next(h for h in hooks if h["name"] == "billing")
        assert billing["forward"]["headers"]["X-Token"] == "{{ secrets.CLI_KEY }}"

        deleted = offload(engine.url, "secrets", "delete", "CLI_KEY")
        assert deleted.returncode == 0 and "CLI_KEY" not in \
            offload(engine.url, "secrets", "list").stdout
        log = engine.log_path.read_text()
        assert VALUE not in log and "whsec_cli_test" not in log

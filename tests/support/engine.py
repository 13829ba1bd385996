"""Run a real ``offload`` engine process for integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.poll import eventually


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EngineProcess:
    """``offload dev`` (or ``serve``) in a subprocess, on loopback, with its own data dir."""

    def __init__(self, data_dir: Path, *, database_url: str | None = None,
                 mode: str = "dev", env: dict[str, str] | None = None,
                 port: int | None = None, args: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.mode = mode
        self.env = env or {}
        self.port = port or free_port()
        self.args = args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"engine-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> EngineProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "offload", self.mode, "--port", str(self.port),
               "--data-dir", str(self.data_dir), *self.args]
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        env = {**os.environ, "OFFLOAD_LEASE_S": "4", "OFFLOAD_RESCUE_EVERY_S": "1",
               **self.env}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"engine exited with {proc.returncode}:\n{self.logs()}")
            try:
                return httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            eventually(ready, timeout=timeout, what="the engine")
        except AssertionError:
            raise RuntimeError(f"engine did not become ready in {timeout}s:\n"
                               f"{self.logs()}") from None
        return self

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() \
            else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (SIGKILL by default: no cleanup at all) and reap the process."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=15)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def __enter__(self) -> EngineProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()

"""Start a real ``coderig serve`` in a subprocess for end-to-end tests, and stop it after."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    process: subprocess.Popen
    port: int
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready_info(self) -> dict:
        return httpx.get(f"{self.url}/ready", timeout=5).json()

    def wait_ready(self, timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"coderig serve exited early:\n{self.output()}")
            try:
                response = httpx.get(f"{self.url}/ready", timeout=2)
                if response.status_code == 200:
                    return response.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"coderig serve not ready after {timeout}s:\n{self.output()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    tmp_path: Path, *args: str, env: dict | None = None, cwd: Path | None = None
) -> RunningServer:
    port = free_port()
    log_path = tmp_path / f"serve-{port}.log"
    argv = [
        sys.executable, "-m", "coderig", "serve", "--port", str(port),
        "--log-dir", str(tmp_path / f"replicas-{port}"), *args,
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,  # `python -m` puts the working directory first on sys.path
        )
    server = RunningServer(process, port, log_path, list(args))
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server

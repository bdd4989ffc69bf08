"""A real llama.cpp server (``llama-server``, the binary coderig runs), started alone: the
"server the user already runs" that ``--engine external`` puts the gateway in front of."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from coderig.models import embedded_model_path
from tests.support.engine import llama_server_binary
from tests.support.server import free_port


@dataclass
class RunningReplica:
    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_replica(
    tmp_path: Path, *, alias: str = "smollm", port: int | None = None, extra: tuple = ()
) -> RunningReplica:
    port = port or free_port()
    log_path = tmp_path / f"replica-{port}.log"
    argv = [
        str(llama_server_binary()),
        "--model", str(embedded_model_path()), "--alias", alias,
        "--host", "127.0.0.1", "--port", str(port),
        "--threads", "1", "--ctx-size", "2048", "--no-webui", *extra,
    ]  # fmt: skip
    with open(log_path, "ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    replica = RunningReplica(process, port, log_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"replica exited:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(f"{replica.url}/v1/models", timeout=2).status_code == 200:
                return replica
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    replica.stop()
    raise TimeoutError(f"replica not up:\n{log_path.read_text(errors='replace')}")

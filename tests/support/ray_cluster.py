"""A private, bounded local Ray cluster for tests: ``ray start --head --block`` in a session of
its own, on loopback, 2 CPUs, its own ports and temp dir, stopped by signalling that session
(never ``ray stop``, which would stop every Ray cluster on the machine)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class RayCluster:
    process: subprocess.Popen
    gcs_port: int
    log_path: Path
    env: dict
    temp_dir: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def deploy_coderig(self, port: int, idle_s: float) -> subprocess.CompletedProcess:
        """``coderig deploy ray`` on this cluster: 2 replicas of the embedded model (1 thread
        each) that scale to zero after ``idle_s`` seconds without load."""
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "coderig",
                "deploy",
                "ray",
                "--address",
                self.address,
                "--port",
                str(port),
                "--replicas",
                "2",
                "--min-replicas",
                "0",
                "--max-replicas",
                "2",
                "--threads-per-replica",
                "1",
                "--idle-shutdown",
                f"{idle_s:g}s",
            ],  # fmt: skip
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # whatever it started and left behind
        except ProcessLookupError:
            pass
        self.process.wait()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def ray_executable() -> str:
    return str(Path(sys.executable).with_name("ray"))


def start_ray(tmp_path: Path, num_cpus: int = 2) -> RayCluster:
    # Ray's temp dir ends in a socket path that must stay short (AF_UNIX: 107 bytes).
    temp_dir = Path(f"/tmp/crray-{os.getpid()}-{free_port()}")
    gcs_port = free_port()
    log_path = tmp_path / "ray-head.log"
    env = {
        **os.environ,
        # Workers import coderig from this checkout, whatever is installed.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    argv = [
        ray_executable(), "start", "--head", "--block",
        "--num-cpus", str(num_cpus), "--num-gpus", "0",
        "--node-ip-address", "127.0.0.1",
        "--port", str(gcs_port),
        "--ray-client-server-port", str(free_port()),
        "--dashboard-agent-listen-port", str(free_port()),
        "--metrics-export-port", str(free_port()),
        "--include-dashboard", "false",
        "--disable-usage-stats",
        "--temp-dir", str(temp_dir),
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    cluster = RayCluster(process, gcs_port, log_path, env, temp_dir)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ray start failed:\n{cluster.output()}")
        status = subprocess.run(
            [ray_executable(), "status", "--address", cluster.address],
            capture_output=True,
            text=True,
            env=env,
        )
        if status.returncode == 0:
            return cluster
        time.sleep(1)
    cluster.stop()
    raise TimeoutError(f"ray cluster not up:\n{cluster.output()}")

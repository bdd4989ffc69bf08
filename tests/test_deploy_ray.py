"""``coderig deploy ray`` on a real local Ray cluster (``ray start --head``, 2 CPUs, loopback):
two replicas of the embedded model both serve through the same OpenAI surface, a killed replica
is replaced (and its engine process dies with it), and the replicas scale to zero after idle and
come back on the next request."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install 'coderig[ray]')")

from tests.support.ray_cluster import start_ray  # noqa: E402
from tests.support.server import free_port  # noqa: E402

pytestmark = pytest.mark.e2e

REPLICA_TITLE = "ServeReplica:coderig:CoderigReplica"
IDLE_S = 10
REQUEST = {"prompt": "def add(a, b):\n", "max_tokens": 8, "temperature": 0}


def replica_pids() -> set[int]:
    """Ray worker processes running a CoderigReplica (Ray names them in their title)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if REPLICA_TITLE in cmdline:
            pids.add(int(entry.name))
    return pids


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        if f"\nPPid:\t{pid}\n" in status:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def running_replicas(url: str) -> int | None:
    """What the gateway's /ready says Ray Serve runs now (None: not known yet)."""
    try:
        return httpx.get(f"{url}/ready", timeout=10).json().get("running_replicas")
    except (httpx.HTTPError, ValueError):
        return None


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


@pytest.fixture(scope="module")
def ray_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ray")
    cluster = start_ray(tmp)
    port = free_port()
    try:
        deployed = cluster.deploy_coderig(port, IDLE_S)
        assert deployed.returncode == 0, deployed.stderr + cluster.output()
        assert f"http://127.0.0.1:{port}/v1" in deployed.stderr
        yield f"http://127.0.0.1:{port}"
    finally:
        cluster.stop()


def concurrent(url: str, n: int, body: dict = REQUEST) -> list[httpx.Response]:
    responses: list[httpx.Response] = []

    def call() -> None:
        responses.append(httpx.post(f"{url}/v1/completions", json=body, timeout=120))

    threads = [threading.Thread(target=call) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(150)
    return responses


def engine_state() -> str:
    """For failure messages: each replica's engine processes, alive or not, and their log tails."""
    lines = []
    for replica in sorted(replica_pids()):
        engines = {e: alive(e) for e in children(replica)}
        lines.append(f"replica {replica}: engines {engines}")
    if shutil.which("ss"):
        listening = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout
        lines += [line for line in listening.splitlines() if "127.0.0.1" in line]
    return "\n".join(lines)


def served_by(url: str) -> dict[str, float]:
    counts = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("coderig_ray_replica_requests_total{"):
            replica = line.split('replica="')[1].split('"')[0]
            counts[replica] = float(line.rsplit(" ", 1)[1])
    return counts


def test_both_replicas_serve(ray_app):
    assert len(replica_pids()) == 2
    for _ in range(3):
        responses = concurrent(ray_app, 4)
        statuses = [r.status_code for r in responses]
        assert statuses == [200] * 4, [r.text for r in responses] + [engine_state()]
        if len(served_by(ray_app)) == 2:
            break
    assert len(served_by(ray_app)) == 2, served_by(ray_app)


def test_the_same_openai_surface(ray_app):
    client = openai.OpenAI(base_url=f"{ray_app}/v1", api_key="unused")
    assert [m.id for m in client.models.list().data] == ["smollm2-135m-instruct"]
    stream = client.completions.create(
        model="smollm2-135m-instruct",
        stream=True,
        stream_options={"include_usage": True},
        **REQUEST,
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices)
    assert chunks[-1].usage.completion_tokens == 8
    fim = httpx.post(f"{ray_app}/v1/completions", json={**REQUEST, "suffix": "\n"}, timeout=60)
    assert fim.status_code == 200 and fim.headers["x-coderig-fim"] == "prefix-only"
    wrong = httpx.post(f"{ray_app}/v1/completions", json={**REQUEST, "model": "gpt-4"})
    assert wrong.status_code == 404 and wrong.json()["error"]["code"] == "model_not_found"
    too_long = {**REQUEST, "max_tokens": 5000}
    assert httpx.post(f"{ray_app}/v1/completions", json=too_long).status_code == 400


def test_a_killed_replica_is_replaced(ray_app):
    before = wait_for(lambda: (p := replica_pids()) and len(p) == 2 and p, 60, "2 replicas")
    victim = min(before)
    engines = children(victim)
    assert engines, "the replica runs its engine as a child process"
    stop = threading.Event()
    statuses: list[int] = []

    def keep_busy() -> None:  # load, so the autoscaler keeps wanting 2 replicas
        while not stop.is_set():
            statuses.extend(r.status_code for r in concurrent(ray_app, 2))

    load = threading.Thread(target=keep_busy)
    load.start()
    try:
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: not any(alive(e) for e in engines), 15, "engine died with its replica")
        after = wait_for(
            lambda: (p := replica_pids()) and len(p) == 2 and victim not in p and p,
            120,
            "a replacement replica",
        )
    finally:
        stop.set()
        load.join(150)
    assert victim not in after and len(after - before) == 1
    assert concurrent(ray_app, 2)[0].status_code == 200
    # Requests caught on the killed replica fail fast with a retryable 503, never hang.
    assert set(statuses) <= {200, 503}


def test_replicas_scale_to_zero_after_idle_and_the_next_request_starts_one(ray_app):
    wait_for(lambda: not replica_pids(), IDLE_S + 90, "scale to zero")
    # The gateway counts a cold start when its last poll of serve.status() saw no replica
    # running; Ray's status can lag the processes' exit on a loaded machine.
    wait_for(lambda: running_replicas(ray_app) == 0, 60, "/ready reporting no replica running")
    started = time.monotonic()
    response = httpx.post(f"{ray_app}/v1/completions", json=REQUEST, timeout=180)
    cold_start = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert len(replica_pids()) >= 1
    metrics = httpx.get(f"{ray_app}/metrics", timeout=10).text
    assert 'coderig_cold_starts_total{reason="request"} 1.0' in metrics
    assert "coderig_cold_start_seconds_count 1.0" in metrics
    print(f"cold start after scale to zero: {cold_start:.1f}s")

"""How the Ray Serve app recovers from an engine that stops answering, without a cluster: the
replica's health check probes the engine itself (a live process is not enough), and the gateway
sends a request that reached no engine to Ray's router again instead of failing it."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import httpx
import pytest

pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install 'coderig[ray]')")

from coderig.deploy import ray_app  # noqa: E402
from coderig.deploy.ray_app import CoderigGateway, CoderigReplica  # noqa: E402
from coderig.serve.upstream import UpstreamUnreachable, stream_completion  # noqa: E402


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_refused_connection_is_unreachable_not_a_lost_stream():
    async def call() -> None:
        async with httpx.AsyncClient() as client:
            async for _ in stream_completion(
                client, f"http://127.0.0.1:{closed_port()}", {}, stall_timeout=5
            ):
                pass

    with pytest.raises(UpstreamUnreachable, match="ConnectError"):
        asyncio.run(call())


@pytest.fixture
def sleeping_process():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def replica_at(url: str, process: subprocess.Popen) -> CoderigReplica:
    replica = CoderigReplica.__new__(CoderigReplica)
    replica.url = url
    replica.process = process
    replica.health_path = "/health"
    replica.unreachable = None
    replica.replica_id = "test"
    return replica


def test_health_check_fails_when_the_engine_lives_but_does_not_answer(sleeping_process):
    async def check() -> None:
        replica = replica_at(f"http://127.0.0.1:{closed_port()}", sleeping_process)
        async with httpx.AsyncClient() as replica.client:
            await replica.check_health()

    with pytest.raises(RuntimeError, match=f"pid {sleeping_process.pid} does not answer"):
        asyncio.run(check())


def test_health_check_fails_when_the_engine_exited(sleeping_process):
    sleeping_process.kill()
    sleeping_process.wait()
    replica = replica_at("http://127.0.0.1:1", sleeping_process)
    with pytest.raises(RuntimeError, match="engine killed by SIGKILL"):
        asyncio.run(replica.check_health())


def test_a_replica_reports_an_unreachable_engine_as_retryable(sleeping_process):
    async def generate() -> list[dict]:
        replica = replica_at(f"http://127.0.0.1:{closed_port()}", sleeping_process)
        replica.config = ray_app.RayAppConfig()
        async with httpx.AsyncClient() as replica.client:
            chunks = [chunk async for chunk in replica.generate({"prompt": "x"})]
        assert replica.unreachable
        return chunks

    [chunk] = asyncio.run(generate())
    assert chunk["coderig_unreachable"] is True
    assert f"engine pid {sleeping_process.pid} running" in chunk["coderig_failure"]


class FakeHandle:
    """Stands for ``DeploymentHandle.generate`` with stream=True: one scripted reply per call."""

    def __init__(self, replies: list[list[dict]]) -> None:
        self.replies = replies
        self.calls = 0
        self.generate = self

    def remote(self, payload: dict):
        reply = self.replies[self.calls]
        self.calls += 1

        async def stream():
            for chunk in reply:
                yield chunk

        return stream()


UNREACHABLE = {"coderig_failure": "replica unreachable (ConnectError)", "coderig_unreachable": True}
TOKEN = {"choices": [{"text": "x", "finish_reason": None}]}


def gateway_with(handle: FakeHandle) -> CoderigGateway:
    class Options:
        def options(self, **_):
            return handle

    return CoderigGateway(Options(), ray_app.RayAppConfig().to_dict())


def metric(gateway: CoderigGateway, name: str) -> float:
    return gateway.gateway.metrics.registry.get_sample_value(name) or 0.0


def test_the_gateway_sends_an_unreached_request_again():
    handle = FakeHandle([[UNREACHABLE], [TOKEN, {"coderig_replica": "b", "choices": []}]])
    gateway = gateway_with(handle)

    async def collect() -> list[dict]:
        return [c async for c in gateway._stream_from(gateway.pool.replicas[0], {})]

    assert asyncio.run(collect()) == [TOKEN]
    assert handle.calls == 2
    assert metric(gateway, "coderig_ray_unreachable_retries_total") == 1


def test_the_gateway_gives_up_after_its_retries():
    handle = FakeHandle([[UNREACHABLE]] * (ray_app.UNREACHABLE_RETRIES + 1))
    gateway = gateway_with(handle)

    async def collect() -> list[dict]:
        return [c async for c in gateway._stream_from(gateway.pool.replicas[0], {})]

    with pytest.raises(UpstreamUnreachable):
        asyncio.run(collect())
    assert handle.calls == ray_app.UNREACHABLE_RETRIES + 1


def test_a_failure_mid_stream_is_not_retried():
    handle = FakeHandle([[TOKEN, {"coderig_failure": "replica connection lost (ReadError)"}]])
    gateway = gateway_with(handle)

    async def collect() -> list[dict]:
        return [c async for c in gateway._stream_from(gateway.pool.replicas[0], {})]

    with pytest.raises(Exception, match="ReadError"):
        asyncio.run(collect())
    assert handle.calls == 1

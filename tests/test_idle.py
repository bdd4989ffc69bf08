"""Scale to zero: replicas stop after --idle-shutdown, the next request cold-starts them (and
waits), --schedule keeps them warm and starts them when a window opens."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from datetime import datetime, timedelta

import httpx
import pytest

from coderig.models import embedded_model_path
from coderig.on_hours import DAYS, Schedule
from coderig.serve.idle import IdleController, PowerState, decide
from coderig.serve.metrics import GatewayMetrics
from coderig.serve.pool import ReplicaPool, ReplicaState
from tests.support.engine import llama_server_engine
from tests.support.server import start_server

REQUEST = {"prompt": "x = ", "max_tokens": 3, "temperature": 0}


def test_decisions():
    warm, cold = PowerState.WARM, PowerState.SCALED_TO_ZERO
    quiet = {"busy": False, "idle_for": 60.0, "idle_after": 30.0}
    assert decide(warm, in_schedule=False, **quiet) == "sleep"
    assert decide(warm, in_schedule=True, **quiet) is None  # working hours: stay warm
    assert decide(warm, in_schedule=False, **{**quiet, "busy": True}) is None
    assert decide(warm, in_schedule=False, **{**quiet, "idle_for": 10.0}) is None
    assert decide(warm, in_schedule=False, **{**quiet, "idle_after": None}) is None
    assert decide(cold, in_schedule=True, **quiet) == "wake"  # the window opened
    assert decide(cold, in_schedule=False, **quiet) is None  # wait for a request
    assert decide(PowerState.STARTING, in_schedule=True, **quiet) is None


def test_a_schedule_alone_scales_to_zero_after_fifteen_minutes_outside_it():
    pool = ReplicaPool(llama_server_engine(threads=1), 1, log_dir=_tmp())
    controller = IdleController(pool, idle_after=None, schedule=Schedule.parse("mon-fri 8-19"))
    assert controller.idle_after == 15 * 60


def _tmp():
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp(prefix="coderig-idle-"))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_state(server, state: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(f"{server.url}/ready", timeout=5)
        info = response.json()
        if info.get("state") == state:
            return {"status": response.status_code, **info}
        time.sleep(0.1)
    raise AssertionError(f"not {state} after {timeout}s:\n{server.output()}")


@pytest.mark.e2e
def test_idle_replicas_stop_and_the_next_requests_wait_for_a_cold_start(tmp_path):
    server = start_server(tmp_path, "--threads-per-replica", "1", "--idle-shutdown", "2s")
    try:
        assert httpx.post(f"{server.url}/v1/completions", json=REQUEST, timeout=60).is_success
        pid = server.ready_info()["replicas"][0]["pid"]
        cold = wait_state(server, "scaled_to_zero")
        # Ready (200) while scaled to zero: a request would be served, after a cold start.
        assert cold["status"] == 200 and cold["ready"] is True
        assert cold["replicas"][0]["state"] == "stopped"
        assert not pid_alive(pid)
        assert "scale to zero: no request for" in server.output()

        results: list[int] = []

        def call() -> None:
            response = httpx.post(f"{server.url}/v1/completions", json=REQUEST, timeout=120)
            results.append(response.status_code)

        threads = [threading.Thread(target=call) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert results == [200, 200]  # both waited for the one cold start
        info = server.ready_info()
        assert info["state"] == "warm" and info["replicas"][0]["pid"] != pid
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'coderig_cold_starts_total{reason="request"} 1.0' in metrics
        assert "coderig_cold_start_seconds_count 1.0" in metrics
        assert "coderig_idle_shutdowns_total 1.0" in metrics
        assert "cold start (request): replicas ready after" in server.output()
    finally:
        server.stop()


@pytest.mark.e2e
def test_inside_the_schedule_replicas_stay_warm(tmp_path):
    today = DAYS[datetime.now().weekday()]
    tomorrow = DAYS[(datetime.now() + timedelta(days=1)).weekday()]
    # Today and tomorrow all day: in the window now, whatever the time, for the next minutes.
    schedule = f"{today},{tomorrow} 00:00-24:00"
    server = start_server(
        tmp_path, "--threads-per-replica", "1", "--idle-shutdown", "1s", "--schedule", schedule
    )
    try:
        time.sleep(4)
        info = server.ready_info()
        assert info["state"] == "warm" and info["replicas"][0]["state"] == "ready"
    finally:
        server.stop()


@pytest.mark.e2e
def test_a_failed_cold_start_is_a_503_not_a_hang(tmp_path):
    model = tmp_path / "model.gguf"
    shutil.copy(embedded_model_path(), model)
    server = start_server(
        tmp_path,
        "--model", str(model), "--threads-per-replica", "1",
        "--idle-shutdown", "1s", "--startup-timeout", "30s",
    )  # fmt: skip
    try:
        wait_state(server, "scaled_to_zero")
        model.write_bytes(b"GGUF but not really")  # the replica cannot load it any more
        response = httpx.post(f"{server.url}/v1/completions", json=REQUEST, timeout=60)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "cold_start_failed"
        assert "cold start (request) failed" in server.output()
        # Still up, still scaled to zero, still honest about it.
        assert wait_state(server, "scaled_to_zero")["status"] == 200
    finally:
        server.stop()


@pytest.mark.e2e
def test_the_schedule_opening_starts_the_replicas_without_a_request(tmp_path):
    """A real pool and controller, with a clock the test moves into the schedule's window."""
    now = {"t": datetime(2026, 1, 5, 7, 59)}  # a Monday, one minute before the window

    async def scenario() -> tuple[list[str], float]:
        pool = ReplicaPool(
            llama_server_engine(threads=1, n_ctx=512),
            1,
            log_dir=tmp_path,
            startup_timeout=60,
            health_interval=0.5,
        )
        metrics = GatewayMetrics()
        controller = IdleController(
            pool,
            idle_after=0.5,
            schedule=Schedule.parse("mon-fri 08:00-19:00"),
            metrics=metrics,
            check_interval=0.2,
            clock=lambda: now["t"],
        )
        states = []
        await pool.start()
        controller.start()
        try:
            await _until(lambda: controller.state == PowerState.SCALED_TO_ZERO, 30)
            states.append(str(controller.state))
            assert all(r.state == ReplicaState.STOPPED for r in pool.replicas)
            now["t"] = datetime(2026, 1, 5, 8, 0)
            await _until(lambda: controller.state == PowerState.WARM, 60)
            states.append(str(controller.state))
            assert pool.ready()
            starts = metrics.cold_starts.labels("schedule")._value.get()
            # Inside the window it stays warm, however idle.
            await asyncio.sleep(1.5)
            states.append(str(controller.state))
        finally:
            await controller.stop()
            await pool.stop()
        return states, starts

    states, starts = asyncio.run(scenario())
    assert states == ["scaled_to_zero", "warm", "warm"]
    assert starts == 1


async def _until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)

"""One llama-server replica, four slots: requests run at the same time (continuous batching),
a cancelled request's prefill stays in its slot and the same developer's next request reuses it
— sent there by the gateway (--pin-slots) or chosen there by llama-server (the default) — and
the engine's own metrics are part of the gateway's."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.support.engine import wait_until_idle
from tests.support.server import start_server

pytestmark = pytest.mark.e2e

# ~780 tokens of Python source: its prefill takes more than one 512-token batch.
SOURCE = "".join(
    f"def handler_{i}(request, retries={i}):\n"
    f"    '''Handle request kind {i} and retry up to {i} times.'''\n"
    f"    for attempt in range(retries):\n"
    f"        result = request.send(timeout={i % 7 + 1})\n"
    f"        if result.ok:\n"
    f"            return result.value * {i}\n"
    f"    raise RuntimeError('handler_{i} failed')\n\n"
    for i in range(10)
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # llama-server's own choice of slot (the idle slot whose prompt looks most like the new
    # one) is switched off, and so is the RAM prompt cache: a cache hit below can only come
    # from the gateway naming the slot.
    running = start_server(
        tmp_path_factory.mktemp("slots"), "--slots", "4", "--prompt-cache", "0",
        "--max-queue-wait", "off", "--pin-slots",
        "--llama-server-arg=--slot-prompt-similarity", "--llama-server-arg=0",
    )  # fmt: skip
    yield running
    running.stop()


def replica_url(server) -> str:
    return server.ready_info()["replicas"][0]["url"]


def cached_tokens(server) -> float:
    metrics = httpx.get(f"{server.url}/metrics").text
    for line in metrics.splitlines():
        if line.startswith("coderig_prompt_cached_tokens_total "):
            return float(line.split()[1])
    return 0.0


def stream_times(server, prompt: str, max_tokens: int, out: list) -> None:
    """Seconds (monotonic) of the first and the last text chunk of one streamed completion."""
    body = {"prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True, "stream": True}
    first = last = None
    with httpx.stream("POST", f"{server.base_url}/completions", json=body, timeout=300) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: {") and '"text"' in line:
                last = time.monotonic()
                first = first or last
    out.append((first, last))


def test_four_requests_on_one_replica_run_at_the_same_time(server):
    spans: list = []
    threads = [
        threading.Thread(
            target=stream_times, args=(server, f"# task {i}\ndef job_{i}():\n", 24, spans)
        )
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(spans) == 4 and all(first and last for first, last in spans)
    # One after another, a request's first token would come after the previous one's last.
    # Batched, every request has its first token before any of them has its last.
    assert max(first for first, _ in spans) < min(last for _, last in spans)


def test_a_cancelled_prefill_is_reused_by_the_same_developers_next_request(server):
    assert_cancelled_prefill_is_reused(server)


def test_by_default_llama_server_picks_the_slot_and_reuses_the_cancelled_prefill(tmp_path):
    server = start_server(tmp_path, "--slots", "4", "--prompt-cache", "0")
    try:
        assert_cancelled_prefill_is_reused(server)
    finally:
        server.stop()


def assert_cancelled_prefill_is_reused(server) -> None:
    url = f"{server.base_url}/completions"
    alice = {"X-Coderig-Session": "alice"}
    wait_until_idle(replica_url(server))
    # Alice's editor asks, then she types on: the request is cancelled during its prefill.
    with httpx.stream(
        "POST", url, headers=alice, timeout=60,
        json={"prompt": SOURCE, "max_tokens": 16, "stream": True},
    ) as response:  # fmt: skip
        assert response.status_code == 200
        time.sleep(0.3)
    wait_until_idle(replica_url(server))
    # Bob's request comes in between and takes a slot of its own.
    bob = httpx.post(
        url,
        headers={"X-Coderig-Session": "bob"},
        json={"prompt": "import os\n\nprint(os.getcwd())\n", "max_tokens": 2},
        timeout=60,
    )
    assert bob.status_code == 200
    # Alice's next request: her file, a few characters longer.
    before = cached_tokens(server)
    again = httpx.post(
        url, headers=alice, json={"prompt": SOURCE + "def next_", "max_tokens": 2}, timeout=120
    )
    assert again.status_code == 200
    reused = cached_tokens(server) - before
    prompt_tokens = again.json()["usage"]["prompt_tokens"]
    # llama-server finishes a prefill it started even when the client left (measured: all of
    # it); at the very least its first 512-token batch is there to reuse.
    assert reused >= min(512, prompt_tokens // 2), (reused, prompt_tokens)


def test_the_engines_own_metrics_are_in_the_gateways_with_a_replica_label(server):
    metrics = httpx.get(f"{server.url}/metrics").text
    name = server.ready_info()["replicas"][0]["name"]
    assert f'llamacpp:prompt_tokens_total{{replica="{name}"}}' in metrics
    assert f'llamacpp:tokens_predicted_total{{replica="{name}"}}' in metrics
    assert "coderig_requests_total" in metrics  # alongside the gateway's own

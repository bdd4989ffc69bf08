"""A developer's newer editor request replaces their older one still queued or running: the
older is answered 409 ``superseded`` and gives its place to the newer, on the real engine."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from coderig.serve.supersede import Supersession, same_code
from tests.support.server import start_server

pytestmark = pytest.mark.e2e

# Counting never ends by itself: a long generation that only supersession stops early.
CODE = "".join(f"{i}\n" for i in range(1, 41))
MORE = CODE + "41\n"
BODY = {"n_predict": 400, "temperature": 0, "stop_rules": False}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("supersede"), "--slots", "1")
    yield running
    running.stop()


def counter(server, name: str, **labels: str) -> float:
    total = 0.0
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def infill(server, prefix: str, session: str, **extra) -> httpx.Response:
    return httpx.post(
        f"{server.url}/infill",
        json={**BODY, "input_prefix": prefix, **extra},
        headers={"X-Coderig-Session": session},
        timeout=120,
    )


def in_background(fn, *args, **kwargs) -> dict:
    out: dict = {}

    def run() -> None:
        out["response"] = fn(*args, **kwargs)
        out["done_at"] = time.monotonic()

    out["thread"] = threading.Thread(target=run, daemon=True)
    out["thread"].start()
    return out


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def replica(server) -> dict:
    return server.ready_info()["replicas"][0]


def test_a_running_request_stops_when_its_developer_sends_a_newer_one(server):
    before = counter(server, "coderig_cancelled_requests_total", reason="superseded")
    with httpx.stream(
        "POST",
        f"{server.url}/infill",
        json={**BODY, "input_prefix": CODE, "stream": True},
        headers={"X-Coderig-Session": "alice"},
        timeout=120,
    ) as older:
        lines = older.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert json.loads(first[6:])["content"] is not None  # it is generating
        newer = in_background(infill, server, MORE, "alice", n_predict=4)
        events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    newer["thread"].join(120)
    assert newer["response"].status_code == 200, newer["response"].text
    error = events[-1]["error"]  # llama.cpp's in-band error shape
    assert error["code"] == 409 and error["message"].startswith("superseded:")
    generated = sum(1 for e in events if "content" in e and not e.get("stop"))
    assert generated < 300  # far short of the 400 asked for
    assert counter(server, "coderig_cancelled_requests_total", reason="superseded") == before + 1


def test_a_queued_request_leaves_the_queue_when_replaced(server):
    # Bob holds the only slot; Alice's first request waits behind him, then her second comes.
    bob = in_background(infill, server, "x = 0\n" * 5, "bob", n_predict=60)
    wait_for(lambda: replica(server)["active"] == 1)
    first = in_background(infill, server, CODE, "alice", n_predict=4)
    wait_for(lambda: replica(server)["queued"] == 1)
    second = in_background(infill, server, MORE, "alice", n_predict=4)
    first["thread"].join(120)
    second["thread"].join(120)
    bob["thread"].join(120)
    # Answered while Bob still ran: it left the queue, it did not wait for its turn.
    assert first["response"].status_code == 409, first["response"].text
    assert "superseded" in first["response"].text
    assert first["done_at"] < bob["done_at"]
    assert second["response"].status_code == 200
    assert bob["response"].status_code == 200


def test_other_developers_and_other_code_are_never_replaced(server):
    alice = in_background(infill, server, CODE, "alice", n_predict=24)
    wait_for(lambda: replica(server)["active"] + replica(server)["queued"] >= 1)
    carol = infill(server, MORE, "carol", n_predict=4)  # same code, another developer
    other = infill(server, "import os\n" * 3 + "def f():\n", "alice", n_predict=4)
    alice["thread"].join(120)
    assert carol.status_code == 200
    assert other.status_code == 200
    assert alice["response"].status_code == 200


def test_openai_requests_are_never_replaced(server):
    body = {"prompt": CODE, "max_tokens": 24, "temperature": 0}
    headers = {"X-Coderig-Session": "dave"}
    older = in_background(
        httpx.post, f"{server.base_url}/completions", json=body, headers=headers, timeout=120
    )
    wait_for(lambda: replica(server)["active"] == 1)
    newer = httpx.post(
        f"{server.base_url}/completions", json={**body, "prompt": MORE}, headers=headers,
        timeout=120,
    )  # fmt: skip
    older["thread"].join(120)
    assert older["response"].status_code == 200
    assert newer.status_code == 200


def test_same_code_means_most_of_the_older_lines_are_in_the_newer():
    window = "".join(f"line_{i} = {i}\n" for i in range(32))
    slid = "".join(f"line_{i} = {i}\n" for i in range(1, 33))
    assert same_code(window, slid)
    assert not same_code(window, "".join(f"other_{i} = {i}\n" for i in range(32)))
    assert not same_code("\n\n", window)  # nothing to compare: never replaced


def test_supersession_marks_only_older_requests_of_the_same_flow():
    from coderig.serve.generate import GenerationRequest

    def request(flow: str, prompt: str) -> GenerationRequest:
        return GenerationRequest("infill", prompt, 1, 1, {}, flow=flow, supersedable=True)

    sup = Supersession()
    a1, b1 = request("a", CODE), request("b", CODE)
    with sup.track(a1), sup.track(b1):
        a2 = request("a", MORE)
        with sup.track(a2):
            assert a1.superseded.is_set()
            assert not b1.superseded.is_set() and not a2.superseded.is_set()
            assert sup.in_flight("a") == 2
    assert sup.in_flight("a") == 0 and sup.superseded == 1

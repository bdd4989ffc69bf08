"""Hostile HTTP: oversized heads, slowloris, half-open and idle connections, bad encodings,
deep JSON. Each gets a clear 4xx or a closed connection, memory stays bounded, and normal
requests are served meanwhile."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.support.server import start_server

pytestmark = pytest.mark.e2e

GOOD = {"prompt": "x = ", "max_tokens": 2}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    running = start_server(
        tmp_path_factory.mktemp("hostile"),
        "--header-timeout", "1s", "--body-timeout", "1s", "--max-header-size", "8KiB",
        "--no-access-log",
    )  # fmt: skip
    yield running
    running.stop()


def connect(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def status_of(raw: bytes) -> int | None:
    if not raw.startswith(b"HTTP/1.1 "):
        return None
    return int(raw[9:12])


def still_serving(server) -> None:
    response = httpx.post(f"{server.base_url}/completions", json=GOOD, timeout=60)
    assert response.status_code == 200


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_oversized_headers_get_431_and_a_closed_connection(guarded):
    sock = connect(guarded)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    raw = read_all(sock)
    assert status_of(raw) == 431
    assert b"headers_too_large" in raw
    still_serving(guarded)


def test_slowloris_head_gets_408_while_others_are_served(guarded):
    sock = connect(guarded)
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    still_serving(guarded)  # served while the slow client dribbles
    for _ in range(6):
        try:
            sock.sendall(b"X-Slow: 1\r\n")
        except OSError:
            break
        time.sleep(0.3)
    raw = read_all(sock)
    assert status_of(raw) == 408
    assert time.monotonic() - started < 10
    still_serving(guarded)


def test_a_connection_that_never_speaks_is_closed(guarded):
    sock = connect(guarded)
    started = time.monotonic()
    assert read_all(sock) == b""  # closed without a response
    assert time.monotonic() - started < 10


def test_a_trickled_body_gets_408(guarded):
    sock = connect(guarded)
    sock.sendall(
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 200\r\n\r\n{"prompt": '
    )
    raw = read_all(sock)
    assert status_of(raw) == 408
    assert b"request_timeout" in raw
    still_serving(guarded)


def test_thousands_of_idle_keepalive_connections_do_not_stop_service(guarded):
    gateway_pid = guarded.process.pid
    before = rss_kib(gateway_pid)
    idle = []
    try:
        for _ in range(2000):
            sock = connect(guarded)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            idle.append(sock)
        for sock in idle[:50]:
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        still_serving(guarded)
        grown_mib = (rss_kib(gateway_pid) - before) / 1024
        assert grown_mib < 150, f"gateway RSS grew {grown_mib:.0f} MiB for 2000 idle connections"
    finally:
        for sock in idle:
            sock.close()
    still_serving(guarded)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        pytest.param(b'{"prompt": "\xff\xfe", "max_tokens": 2}', "", id="invalid-utf8"),
        pytest.param(b'{"prompt": ' + b"[" * 50000 + b"]" * 50000 + b"}", "", id="deep-json"),
        pytest.param(b'{"prompt": "\\ud800x", "max_tokens": 2}', "surrogate", id="lone-surrogate"),
        pytest.param(b'{"prompt": "x", "temperature": NaN}', "finite", id="nan"),
        pytest.param(b'{"prompt": "x", "seed": 1e400}', "", id="huge-number"),
    ],
)
def test_bad_encodings_get_a_400(guarded, body, needle):
    response = httpx.post(
        f"{guarded.base_url}/completions",
        content=body,
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 400, response.text
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert needle in response.json()["error"]["message"]
    still_serving(guarded)


def test_a_prompt_of_only_special_tokens_is_served(guarded):
    response = httpx.post(
        f"{guarded.base_url}/completions",
        json={"prompt": "<|im_start|><|im_end|><|endoftext|>" * 200, "max_tokens": 2},
        timeout=60,
    )
    assert response.status_code == 200
    assert response.json()["usage"]["prompt_tokens"] == 600


def test_cors_is_off_by_default(guarded):
    preflight = httpx.options(
        f"{guarded.base_url}/completions",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    response = httpx.get(f"{guarded.url}/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


def test_a_chunked_body_over_the_limit_gets_413_without_a_content_length(guarded):
    def chunks():
        yield b'{"prompt": "'
        for _ in range(40):
            yield b"a" * 65536
        yield b'"}'

    response = httpx.post(
        f"{guarded.base_url}/completions",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    still_serving(guarded)

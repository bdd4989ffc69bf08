"""`coderig serve` from the command line: startup output, clear errors."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.support.server import start_server


@pytest.mark.e2e
def test_startup_prints_the_url_and_a_curl_that_works(tmp_path):
    server = start_server(tmp_path, "--threads-per-replica", "2")
    try:
        output = server.output()
        assert f"http://127.0.0.1:{server.port}/v1" in output
        curl_line = next(line for line in output.splitlines() if line.strip().startswith("curl "))
        result = subprocess.run(curl_line, shell=True, capture_output=True, text=True, timeout=60)
        assert '"text_completion"' in result.stdout
        assert "replica-0 ready" in output
    finally:
        server.stop()
    assert server.process.returncode == 0


def test_a_port_in_use_is_a_clear_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "coderig", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_an_unknown_model_is_a_clear_error():
    result = subprocess.run(
        [sys.executable, "-m", "coderig", "serve", "--port", "0", "--model", "/nope/x.gguf"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_corrupt_gguf_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    result = subprocess.run(
        [sys.executable, "-m", "coderig", "serve", "--port", "0", "--model", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "cannot read this GGUF file" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_listening_socket_is_tcp_with_nodelay_so_responses_are_not_held_by_nagle():
    from coderig.serve.cli import bind_socket

    sock = bind_socket("127.0.0.1", 0)
    try:
        # asyncio sets TCP_NODELAY on accepted connections only when proto says TCP.
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        sock.close()

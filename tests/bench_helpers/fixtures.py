"""Start the fake LLM server in a subprocess (its CPU stays out of the attacker's event loop)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SERVER = Path(__file__).with_name("llm_server.py")


def start_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"fake server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}"


@contextmanager
def running_server() -> Iterator[str]:
    """Base URL of a fake server in a process of its own, stopped on leaving the block."""
    proc, base = start_server()
    try:
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def llm_server() -> Iterator[str]:
    """Base URL of a fresh fake server, e.g. ``http://127.0.0.1:41234``."""
    with running_server() as base:
        yield base

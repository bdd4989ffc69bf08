from __future__ import annotations

import signal
from pathlib import Path

import pytest

from coderig.models import embedded_model_path
from tests.support.fim_gguf import make_fim_model
from tests.support.server import RunningServer, start_server


def pytest_configure(config) -> None:
    """Ctrl-C reaches the processes the tests start, as it does from a terminal. A shell that
    starts pytest in the background (``cmd &`` in a script, ``nohup``) leaves SIGINT ignored,
    every child inherits that, and the tests that stop a child with SIGINT (``bench attack``'s
    Ctrl-C, ``coderig serve``'s shutdown) would then wait for it in vain."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> RunningServer:
    """One `coderig serve` on the embedded model, shared by the e2e tests that don't break it."""
    # No load shedding here: these tests run one request at a time, but on a loaded machine a
    # slow previous request would make admission control refuse the next (it has its own tests).
    running = start_server(
        tmp_path_factory.mktemp("serve"), "--threads-per-replica", "2", "--max-queue-wait", "off"
    )
    yield running
    running.stop()


@pytest.fixture(scope="session")
def qwen_fim_model(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """A real GGUF with Qwen-style FIM special tokens (SmolLM2's weights, renamed tokens)."""
    path = tmp_path_factory.mktemp("models") / "qwen-fim-test.gguf"
    ids = make_fim_model(embedded_model_path(), path, "qwen")
    return path, ids


@pytest.fixture(scope="session")
def starcoder_fim_model(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    path = tmp_path_factory.mktemp("models") / "starcoder-fim-test.gguf"
    ids = make_fim_model(embedded_model_path(), path, "starcoder")
    return path, ids


@pytest.fixture(scope="session")
def qwen_fim_vocab(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """The Qwen-style FIM vocabulary without weights: enough for a tokenizer, quick to write."""
    path = tmp_path_factory.mktemp("models") / "qwen-fim-vocab.gguf"
    ids = make_fim_model(embedded_model_path(), path, "qwen", vocab_only=True)
    return path, ids


@pytest.fixture(scope="session")
def starcoder_fim_vocab(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    path = tmp_path_factory.mktemp("models") / "starcoder-fim-vocab.gguf"
    ids = make_fim_model(embedded_model_path(), path, "starcoder", vocab_only=True)
    return path, ids


# --- the in-process tier: the real app in this process, a fake upstream (tests/support/inprocess)


@pytest.fixture(scope="session")
def fake_upstream_url():
    """A fake OpenAI-compatible upstream (tests/bench_helpers/llm_server.py), shared."""
    from tests.support.inprocess import fake_upstream

    with fake_upstream() as url:
        yield url


@pytest.fixture(scope="session")
def app_client(fake_upstream_url, tmp_path_factory):
    """An open gateway (no keys), assembled and run in process: a TestClient of its app."""
    from tests.support.inprocess import in_process_settings, serve_in_process

    settings = in_process_settings(fake_upstream_url, tmp_path_factory.mktemp("inprocess"))
    with serve_in_process(settings) as client:
        yield client

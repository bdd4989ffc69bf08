"""Fill-in-the-middle through every editor API shape, on a real GGUF with Qwen's FIM tokens."""

from __future__ import annotations

import httpx
import pytest

from coderig.serve.tokenizer import GGUFTokenizer
from tests.support.server import start_server

pytestmark = pytest.mark.e2e

PREFIX = "def add(a, b):\n    "
SUFFIX = "\n\nprint(add(1, 2))\n"
QWEN = "<|fim_prefix|>{p}<|fim_suffix|>{s}<|fim_middle|>"


@pytest.fixture(scope="module")
def fim_server(tmp_path_factory, qwen_fim_model):
    path, _ = qwen_fim_model
    running = start_server(
        tmp_path_factory.mktemp("fim-editors"), "--model", str(path), "--threads-per-replica", "2"
    )
    running.tokenizer = GGUFTokenizer(path)
    yield running
    running.stop()


def post(server, path, body) -> httpx.Response:
    response = httpx.post(f"{server.url}{path}", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response


def test_tabby_renders_the_qwen_template_with_snippets_inside_the_prefix(fim_server):
    response = post(
        fim_server,
        "/v1/completions",
        {
            "language": "python",
            "segments": {
                "prefix": PREFIX,
                "suffix": SUFFIX,
                "declarations": [{"filepath": "ops.py", "body": "def sub(a, b): ..."}],
            },
            "max_tokens": 4,
            "debug_options": {"return_prompt": True},
        },
    )
    assert response.headers["x-coderig-fim"] == "qwen"
    prompt = response.json()["debug_data"]["prompt"]
    block = "# Path: ops.py\n# def sub(a, b): ...\n"
    assert prompt == QWEN.format(p=block + PREFIX, s=SUFFIX)


def test_infill_puts_the_prompt_after_the_middle_marker(fim_server):
    answer = post(
        fim_server,
        "/infill",
        {
            "input_prefix": "def add(a, b):\n",
            "input_suffix": SUFFIX,
            "prompt": "    ",
            "n_predict": 4,
        },  # fmt: skip
    ).json()
    expected = QWEN.format(p="def add(a, b):\n", s=SUFFIX) + "    "
    assert answer["tokens_evaluated"] == fim_server.tokenizer.count_prompt(expected)


def test_ollama_suffix_and_a_raw_fim_prompt_reach_the_model_as_special_tokens(fim_server):
    show = post(fim_server, "/api/show", {"model": "qwen-fim-test"}).json()
    assert (
        "<|fim_prefix|>{{ .Prompt }}<|fim_suffix|>{{ .Suffix }}<|fim_middle|>" in show["template"]
    )
    assert 'stop "<|endoftext|>"' in show["parameters"]
    with_suffix = post(
        fim_server,
        "/api/generate",
        {
            "model": "qwen-fim-test",
            "prompt": PREFIX,
            "suffix": SUFFIX,
            "stream": False,
            "options": {"num_predict": 4},
        },  # fmt: skip
    ).json()
    expected = fim_server.tokenizer.count_prompt(QWEN.format(p=PREFIX, s=SUFFIX))
    assert with_suffix["prompt_eval_count"] == expected
    # Twinny sends the FIM prompt already rendered, as raw text.
    raw = post(
        fim_server,
        "/api/generate",
        {
            "model": "qwen-fim-test",
            "prompt": QWEN.format(p=PREFIX, s=SUFFIX),
            "raw": True,
            "stream": False,
            "options": {"num_predict": 4},
        },  # fmt: skip
    ).json()
    assert raw["prompt_eval_count"] == expected

"""Fill-in-the-middle: templates per family, detection from the vocabulary, and special tokens
that reach the engine as single special tokens."""

from __future__ import annotations

import httpx
import openai
import pytest

from coderig.serve.fim import FimConfigError, choose_template, load_templates
from coderig.serve.tokenizer import GGUFTokenizer
from tests.support.engine import replica_auth
from tests.support.server import start_server

PREFIX = "def area(r):\n    return "
SUFFIX = "\n\nprint(area(2))\n"


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        ("qwen", f"<|fim_prefix|>{PREFIX}<|fim_suffix|>{SUFFIX}<|fim_middle|>"),
        ("codegemma", f"<|fim_prefix|>{PREFIX}<|fim_suffix|>{SUFFIX}<|fim_middle|>"),
        ("starcoder", f"<fim_prefix>{PREFIX}<fim_suffix>{SUFFIX}<fim_middle>"),
        ("deepseek", f"<｜fim▁begin｜>{PREFIX}<｜fim▁hole｜>{SUFFIX}<｜fim▁end｜>"),
        ("codellama", f"<PRE> {PREFIX} <SUF>{SUFFIX} <MID>"),
        ("codestral", f"[SUFFIX]{SUFFIX}[PREFIX]{PREFIX}"),
    ],
)
def test_each_family_renders_its_published_template(family, expected):
    assert load_templates()[family].render(PREFIX, SUFFIX) == expected


def test_rendering_leaves_braces_in_code_alone():
    template = load_templates()["qwen"]
    assert (
        template.render("d = {'a': {x}}", "}")
        == "<|fim_prefix|>d = {'a': {x}}<|fim_suffix|>}<|fim_middle|>"
    )


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("Qwen/Qwen2.5-Coder-7B", "qwen"),
        ("bigcode/starcoder2-3b", "starcoder"),
        ("ibm-granite/granite-3b-code-base", "starcoder"),
        ("deepseek-ai/deepseek-coder-6.7b-base", "deepseek"),
        ("codellama/CodeLlama-7b-hf", "codellama"),
        ("google/codegemma-2b", "codegemma"),
        ("mistralai/Codestral-22B-v0.1", "codestral"),
    ],
)
def test_without_a_vocabulary_the_family_comes_from_the_model_name(name, family):
    assert choose_template(model_name=name, is_special_token=None).id == family


def test_unknown_name_without_vocabulary_has_no_fim():
    assert choose_template(model_name="my-model", is_special_token=None) is None


def test_embedded_model_has_no_fim_tokens():
    from coderig.models import embedded_model_path

    tokenizer = GGUFTokenizer(embedded_model_path())
    # Even a name that says "qwen" must not make us use markers the vocabulary lacks.
    assert (
        choose_template(model_name="qwen-lookalike", is_special_token=tokenizer.is_special_token)
        is None
    )
    with pytest.raises(FimConfigError, match="lacks its markers"):
        choose_template(
            model_name="x", is_special_token=tokenizer.is_special_token, override="qwen"
        )


def test_vocabulary_decides_the_family(qwen_fim_vocab, starcoder_fim_vocab):
    qwen = GGUFTokenizer(qwen_fim_vocab[0])
    starcoder = GGUFTokenizer(starcoder_fim_vocab[0])
    assert (
        choose_template(model_name="anything", is_special_token=qwen.is_special_token).id == "qwen"
    )
    assert (
        choose_template(
            model_name="qwen-named-but-starcoder", is_special_token=starcoder.is_special_token
        ).id
        == "starcoder"
    )


def test_override_and_none_and_unknown_override():
    assert (
        choose_template(model_name="Qwen2.5-Coder", is_special_token=None, override="none") is None
    )
    with pytest.raises(FimConfigError, match="unknown FIM template"):
        choose_template(model_name="x", is_special_token=None, override="bogus")


def test_fim_markers_tokenize_to_their_special_token_ids(qwen_fim_vocab):
    path, ids = qwen_fim_vocab
    tokenizer = GGUFTokenizer(path)
    prompt = load_templates()["qwen"].render(PREFIX, SUFFIX)
    tokens = tokenizer.encode(prompt)
    prefix_ids = tokenizer.encode(PREFIX)
    suffix_ids = tokenizer.encode(SUFFIX)
    assert tokens == (
        [ids["<|fim_prefix|>"]]
        + prefix_ids
        + [ids["<|fim_suffix|>"]]
        + suffix_ids
        + [ids["<|fim_middle|>"]]
    )
    # Without special parsing the same text would be many ordinary tokens.
    assert len(tokenizer.encode("<|fim_prefix|>", special=False)) > 1


@pytest.mark.e2e
def test_fim_request_reaches_the_engine_with_special_tokens(tmp_path, qwen_fim_model):
    path, ids = qwen_fim_model
    server = start_server(tmp_path, "--model", str(path), "--threads-per-replica", "2")
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        raw = client.completions.with_raw_response.create(
            model="qwen-fim-test", prompt=PREFIX, suffix=SUFFIX, max_tokens=4, temperature=0
        )
        assert raw.headers["x-coderig-fim"] == "qwen"
        completion = raw.parse()
        tokenizer = GGUFTokenizer(path)
        expected = len(tokenizer.encode(PREFIX)) + len(tokenizer.encode(SUFFIX)) + 3
        assert completion.usage.prompt_tokens == expected
        # The engine's own count for the rendered prompt agrees: the markers are one token each.
        replica_url = server.ready_info()["replicas"][0]["url"]
        direct = httpx.post(
            f"{replica_url}/v1/completions",
            headers=replica_auth(replica_url),  # the replica answers only the gateway
            json={"prompt": load_templates()["qwen"].render(PREFIX, SUFFIX), "max_tokens": 1},
            timeout=60,
        ).json()
        assert direct["usage"]["prompt_tokens"] == expected
        models = client.models.list().data
        assert models[0].model_extra["fim_template"] == "qwen"
    finally:
        server.stop()

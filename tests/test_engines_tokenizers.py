"""Tokenizers for vLLM and external engines: a real Hugging Face tokenizer (trained here in
milliseconds with the `tokenizers` library, Qwen's FIM special tokens added, loaded back through
``transformers.AutoTokenizer`` exactly as for a checkpoint directory), and the vocabulary-less
estimate used in front of an upstream whose tokenizer is elsewhere."""

from __future__ import annotations

import pytest

from coderig.serve.fim import choose_template
from coderig.serve.fleet import special_token_id
from coderig.serve.remote_tokenizers import ApproxTokenizer, HFTokenizer

pytest.importorskip("transformers", reason="transformers is not installed")

SPECIALS = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|fim_pad|>"]


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    corpus = ["def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1)\n"] * 50
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS, show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>")
    directory = tmp_path_factory.mktemp("qwen-like")
    fast.save_pretrained(directory)
    (directory / "config.json").write_text('{"max_position_embeddings": 32768}')
    return directory


def test_hf_tokenizer_finds_special_tokens_and_the_fim_family(hf_checkpoint):
    tokenizer = HFTokenizer(hf_checkpoint)
    assert tokenizer.is_special_token("<|fim_prefix|>")
    assert not tokenizer.is_special_token("fibonacci")
    assert tokenizer.context_length == 32768
    assert tokenizer.eos_token == "<|endoftext|>"
    fim = choose_template(model_name="local", is_special_token=tokenizer.is_special_token)
    assert fim is not None and fim.id == "qwen"


def test_hf_tokenizer_counts_what_vllm_will_count(hf_checkpoint):
    from transformers import AutoTokenizer

    tokenizer = HFTokenizer(hf_checkpoint)
    reference = AutoTokenizer.from_pretrained(str(hf_checkpoint))
    prompt = "<|fim_prefix|>def fibonacci(n):<|fim_suffix|>\n<|fim_middle|>"
    assert tokenizer.count_prompt(prompt) == len(reference(prompt).input_ids)
    assert tokenizer.decode(tokenizer.encode(prompt)) == prompt


def test_stop_strings_that_are_special_tokens_map_to_ids_for_vllm(hf_checkpoint):
    tokenizer = HFTokenizer(hf_checkpoint)
    ids = special_token_id(tokenizer)
    assert ids("<|endoftext|>") == tokenizer.encode("<|endoftext|>")[0]
    assert ids("\n\n") is None


def test_the_estimate_never_counts_more_tokens_than_bytes_allow():
    approx = ApproxTokenizer()
    assert approx.count_prompt("") == 0
    assert approx.count_prompt("abcd") == 1 and approx.count_prompt("abcde") == 2
    assert approx.count_prompt("é" * 4) == 2  # bytes, not characters
    assert not approx.is_special_token("<|fim_prefix|>")
    assert approx.chat_template is None

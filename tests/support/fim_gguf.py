"""Build a real GGUF model that has FIM tokens, from the embedded SmolLM2, with no download.

SmolLM2's vocabulary has no fill-in-the-middle tokens, so FIM detection and special-token
handling cannot be checked on it. This copies its weights unchanged and renames a few unused
control tokens (``<repo_name>``, ``<reponame>``, ``<file_sep>``, ``<filename>``) to a family's FIM
markers: llama.cpp then treats them as special tokens exactly as in a real Qwen or StarCoder
GGUF. The model's outputs are not meaningful FIM completions; the token plumbing is real.
"""

from __future__ import annotations

from pathlib import Path

import gguf

from tests.support.gguf_read import read_gguf

# Control tokens 3..6 of SmolLM2, unused by its chat template.
RENAMED_IDS = (3, 4, 5, 6)

FAMILY_TOKENS = {
    "qwen": ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|fim_pad|>"),
    "starcoder": ("<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<fim_pad>"),
}


def make_fim_model(
    source: Path, target: Path, family: str, *, vocab_only: bool = False
) -> dict[str, int]:
    """Write ``target``; return each FIM marker's token id.

    ``vocab_only`` leaves the weights out, as llama.cpp's own ``ggml-vocab-*.gguf`` test files
    do: enough for a tokenizer (``Llama(vocab_only=True)``), written in a fraction of the time.
    """
    new_tokens = dict(zip(RENAMED_IDS, FAMILY_TOKENS[family], strict=True))
    reader = read_gguf(source)
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    writer = gguf.GGUFWriter(target, arch=arch, endianess=reader.endianess)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        if field.name == gguf.Keys.Tokenizer.LIST:
            value = list(value)
            for token_id, text in new_tokens.items():
                value[token_id] = text
        if field.name == gguf.Keys.General.NAME:
            value = f"{family}-fim-test"
        writer.add_key_value(field.name, value, value_type, sub_type=sub_type)
    tensors = [] if vocab_only else reader.tensors
    for tensor in tensors:
        writer.add_tensor_info(
            tensor.name,
            tensor.data.shape,
            tensor.data.dtype,
            tensor.data.nbytes,
            tensor.tensor_type,
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in tensors:
        writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
    writer.close()
    return {text: token_id for token_id, text in new_tokens.items()}

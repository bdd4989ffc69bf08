"""Build a real LoRA adapter for the embedded model, in llama.cpp's GGUF adapter format.

The format is the one ``convert_lora_to_gguf.py`` (llama.cpp) writes from a PEFT adapter:
``general.type = adapter``, ``adapter.type = lora``, ``adapter.lora.alpha`` (float32), and per
adapted weight ``blk.N.<name>.weight.lora_a`` (numpy shape ``(r, n_in)``, PEFT's ``lora_A``)
and ``.lora_b`` (``(n_out, r)``, PEFT's ``lora_B``); llama.cpp adds ``alpha / r * B @ A``.

Why numpy and not peft: the embedded model exists here only as a Q4_1 GGUF (no safetensors, no
network), and training needs torch plus a dequantized HF checkpoint — minutes of CPU per test run
for an adapter whose only job in the tests is to be loaded by llama.cpp and to change the output.
So the A/B matrices are seeded random, and B is scaled so that ``|B A|`` is a fixed fraction of
the (dequantized) base weight's norm: a visible, reproducible change in greedy output that still
produces text.
"""

from __future__ import annotations

import re
from pathlib import Path

import gguf
import numpy as np
from gguf.quants import dequantize

from tests.support.gguf_read import read_gguf

TARGETS = re.compile(r"blk\.\d+\.(attn_q|attn_v|ffn_down)\.weight")


def make_lora_adapter(
    base: Path,
    out: Path,
    *,
    rank: int = 8,
    alpha: float = 16.0,
    relative_norm: float = 0.2,
    seed: int = 0,
) -> Path:
    """Write an adapter for ``base`` at ``out``; ``relative_norm`` = |alpha/r B A| / |W|."""
    reader = read_gguf(base)
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    scale = alpha / rank
    for tensor in reader.tensors:
        if not TARGETS.fullmatch(tensor.name):
            continue
        n_in, n_out = int(tensor.shape[0]), int(tensor.shape[1])  # GGUF ne order
        weight = dequantize(tensor.data, tensor.tensor_type).reshape(n_out, n_in)
        a = rng.standard_normal((rank, n_in)).astype(np.float32)
        b = rng.standard_normal((n_out, rank)).astype(np.float32)
        b *= relative_norm * np.linalg.norm(weight) / (scale * np.linalg.norm(b @ a))
        writer.add_tensor(f"{tensor.name}.lora_a", a)
        writer.add_tensor(f"{tensor.name}.lora_b", b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out

"""GPUs, models, dtypes and engine defaults, read from TOML data files.

Every number the planner uses comes from ``coderig/plan/catalog/*.toml`` (each with its
source) or from a user catalog merged over them, so a team can add the GPU it rents, the price
it actually pays, or a fine-tuned model, without touching code. User catalogs are read from,
in order (later wins): ``~/.config/coderig/catalog.toml``, each path in ``$CODERIG_CATALOG``
(``os.pathsep``-separated), then each ``--catalog FILE``. A user file uses the same tables as
the shipped ones: ``[gpus.<id>]``, ``[models.<id>]``, ``[engine]``, ``[cold_start]``,
``[dtypes.<id>]``, ``[kv_cache]``; a table for an existing id only overrides the fields it sets.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "GPU",
    "Model",
    "DType",
    "Catalog",
    "load_catalog",
    "user_catalog_paths",
    "GIB",
]

GIB = 1024**3
_ID = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")
_SHIPPED = ("gpus.toml", "models.toml", "engine.toml")


@dataclass(frozen=True)
class GPU:
    id: str
    name: str
    memory_gib: float
    bandwidth_gbps: float
    bf16_tflops: float
    fp8_tflops: float = 0.0
    interconnect_gbps: float = 32.0
    price_per_hour: float = 0.0
    vendor: str = ""
    source: str = ""
    price_source: str = ""
    #: Measured maximum achievable matmul TFLOPS (MAMF: the best large GEMM on this GPU with
    #: its software stack), 0 = not measured; see gpus.toml.
    bf16_tflops_mamf: float = 0.0
    fp8_tflops_mamf: float = 0.0
    mamf_source: str = ""
    #: Measured time per transformer layer of a decode step that no byte or FLOP accounts for
    #: (kernel ramp-up and tail, elementwise kernels), microseconds; 0 = not measured.
    layer_floor_us: float = 0.0
    floor_source: str = ""

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * GIB

    def tflops(self, compute: str) -> float:
        """Peak dense tensor TFLOPS for a GEMM datatype; fp8 falls back to bf16 math."""
        if compute == "fp8" and self.fp8_tflops > 0:
            return self.fp8_tflops
        return self.bf16_tflops

    def matmul_tflops(self, compute: str, unmeasured_fraction: float) -> float:
        """What a large GEMM of this datatype can reach: the measured MAMF where there is one,
        else the datasheet peak times ``unmeasured_fraction`` (what measured GPUs reach).

        Datasheet peaks are not reached, and by how much differs per GPU (an A100 reaches 87 %
        of its bf16 peak, an H100 80 %, an MI300X 51 %), which decides how fast prompts are
        prefilled: compute-bound steps scale with this, not with the datasheet."""
        if self.bf16_tflops_mamf > 0 and self.bf16_tflops > 0:
            # This chip's own measured efficiency beats other GPUs' for its other datatypes.
            unmeasured_fraction = self.bf16_tflops_mamf / self.bf16_tflops
        if compute == "fp8" and self.fp8_tflops > 0:
            measured, peak = self.fp8_tflops_mamf, self.fp8_tflops
        else:
            measured, peak = self.bf16_tflops_mamf, self.bf16_tflops
        return measured if measured > 0 else peak * unmeasured_fraction

    def layer_floor_s(self, unmeasured_us: float) -> float:
        """Seconds per layer per step that a kernel takes whatever its size: this GPU's
        measured floor, else ``unmeasured_us`` (what the profiled GPUs measure).

        It is why a small model decodes slower than its weight read predicts: a 1.5B model on
        an A100 reads 3 GB per step (1.9 ms) but launches 28 layers of ~10 kernels (1.6 ms)."""
        return (self.layer_floor_us if self.layer_floor_us > 0 else unmeasured_us) * 1e-6


@dataclass(frozen=True)
class DType:
    id: str
    bytes_per_param: float
    compute: str = "bf16"
    source: str = ""
    #: Fraction of the bf16 kernels' memory-bandwidth efficiency that this dtype's weight-only
    #: GEMM kernels reach when streaming weights (dequantising 4-bit weights costs some).
    kernel_efficiency: float = 1.0


@dataclass(frozen=True)
class Model:
    """A decoder-only transformer, described by its config.json numbers."""

    id: str
    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    mlp: str = "gated"
    hf_id: str = ""
    published_params_b: float = 0.0
    source: str = ""

    # Parameter counts ------------------------------------------------------------------------
    @property
    def attention_params_per_layer(self) -> int:
        q = self.hidden_size * self.attention_heads * self.head_dim
        kv = 2 * self.hidden_size * self.kv_heads * self.head_dim
        o = self.attention_heads * self.head_dim * self.hidden_size
        bias = 0
        if self.attention_bias:
            bias = (self.attention_heads + 2 * self.kv_heads) * self.head_dim
        return q + kv + o + bias

    @property
    def mlp_params_per_layer(self) -> int:
        matrices = 3 if self.mlp == "gated" else 2
        return matrices * self.hidden_size * self.intermediate_size

    @property
    def norm_params_per_layer(self) -> int:
        return 2 * self.hidden_size

    @property
    def block_params(self) -> int:
        """Parameters of the transformer blocks: every GEMM weight a token passes through."""
        per_layer = (
            self.attention_params_per_layer + self.mlp_params_per_layer + self.norm_params_per_layer
        )
        return self.layers * per_layer + self.hidden_size  # + final norm

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        """The output projection; shares storage with the embedding when tied."""
        return self.vocab_size * self.hidden_size

    @property
    def params(self) -> int:
        untied_head = 0 if self.tie_word_embeddings else self.lm_head_params
        return self.block_params + self.embedding_params + untied_head

    # Bytes -----------------------------------------------------------------------------------
    def weight_bytes(self, dtype: DType) -> float:
        """Bytes of weights in device memory: blocks in ``dtype``, embedding/lm_head in bf16."""
        head = 0 if self.tie_word_embeddings else self.lm_head_params
        return self.block_params * dtype.bytes_per_param + (self.embedding_params + head) * 2.0

    def weight_bytes_read_per_step(self, dtype: DType) -> float:
        """Bytes streamed from memory by one forward pass: blocks + lm_head (the embedding
        lookup touches only a few rows), the blocks' counted at bf16-kernel efficiency (a
        dtype whose kernels stream weights less efficiently counts as more bytes)."""
        blocks = self.block_params * dtype.bytes_per_param / dtype.kernel_efficiency
        return blocks + self.lm_head_params * 2.0

    def kv_bytes_per_token(self, bytes_per_element: float = 2.0) -> float:
        """K and V, for every layer and KV head, of one token."""
        return 2 * self.layers * self.kv_heads * self.head_dim * bytes_per_element


@dataclass(frozen=True)
class Catalog:
    gpus: dict[str, GPU]
    models: dict[str, Model]
    dtypes: dict[str, DType]
    engine: dict[str, Any]
    cold_start: dict[str, Any]
    kv_cache: dict[str, Any]
    files: tuple[str, ...] = field(default_factory=tuple)

    def gpu(self, gpu_id: str) -> GPU:
        return _lookup(self.gpus, gpu_id, "GPU")

    def model(self, model_id: str) -> Model:
        return _lookup(self.models, model_id, "model")

    def dtype(self, dtype_id: str) -> DType:
        return _lookup(self.dtypes, dtype_id, "dtype")

    @property
    def kv_bytes_per_element(self) -> float:
        return float(self.kv_cache.get("bytes_per_element", 2))

    @property
    def unmeasured_matmul_fraction(self) -> float:
        """Fraction of its datasheet peak a GPU with no measured MAMF is assumed to reach."""
        return float(self.engine.get("unmeasured_matmul_fraction", 0.8))

    @property
    def unmeasured_layer_floor_us(self) -> float:
        """Kernel floor per layer assumed for a GPU with no measured ``layer_floor_us``."""
        return float(self.engine.get("unmeasured_layer_floor_us", 0.0))

    @property
    def block_size(self) -> int:
        """vLLM's KV-cache block size: the prefix cache hits whole blocks only."""
        return int(self.engine.get("block_size", 16))


def _lookup(table: dict, key: str, what: str):
    key_norm = key.strip().lower()
    if key_norm in table:
        return table[key_norm]
    known = ", ".join(sorted(table))
    raise KeyError(f"unknown {what} {key!r}; known: {known} (add your own with --catalog FILE)")


def user_catalog_paths(extra: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """User catalog files that exist, lowest precedence first."""
    paths: list[Path] = []
    home = Path(os.path.expanduser("~/.config/coderig/catalog.toml"))
    if home.is_file():
        paths.append(home)
    for item in os.environ.get("CODERIG_CATALOG", "").split(os.pathsep):
        if item.strip():
            path = Path(item.strip())
            if not path.is_file():
                raise FileNotFoundError(f"CODERIG_CATALOG names {path}, which is not a file")
            paths.append(path)
    for item in extra:
        path = Path(item)
        if not path.is_file():
            raise FileNotFoundError(f"catalog file {path} does not exist")
        paths.append(path)
    return paths


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_shipped() -> dict:
    data: dict = {}
    root = resources.files("coderig.plan") / "catalog"
    for name in _SHIPPED:
        data = _deep_merge(data, tomllib.loads((root / name).read_text(encoding="utf-8")))
    return data


def _build(cls, table: dict, kind: str, source: str):
    out = {}
    known = set(cls.__dataclass_fields__) - {"id"}
    for key, fields in table.items():
        if not _ID.match(key):
            raise ValueError(
                f"{kind} id {key!r} in {source}: use lower-case and dashes, e.g. h100-sxm"
            )
        unknown = set(fields) - known
        if unknown:
            raise ValueError(f"{kind} {key!r} in {source}: unknown field(s) {sorted(unknown)}")
        try:
            out[key] = cls(id=key, **fields)
        except TypeError as exc:
            raise ValueError(f"{kind} {key!r} in {source}: {exc}") from None
    return out


def load_catalog(extra_files: Iterable[str | os.PathLike] = ()) -> Catalog:
    """The shipped catalog with user catalog files merged over it."""
    data = _read_shipped()
    files = ["(shipped) coderig/plan/catalog/" + "+".join(_SHIPPED)]
    for path in user_catalog_paths(extra_files):
        try:
            data = _deep_merge(data, tomllib.loads(path.read_text(encoding="utf-8")))
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"catalog file {path}: {exc}") from None
        files.append(str(path))
    where = ", ".join(files)
    return Catalog(
        gpus=_build(GPU, data.get("gpus", {}), "GPU", where),
        models=_build(Model, data.get("models", {}), "model", where),
        dtypes=_build(DType, data.get("dtypes", {}), "dtype", where),
        engine=dict(data.get("engine", {})),
        cold_start=dict(data.get("cold_start", {})),
        kv_cache=dict(data.get("kv_cache", {})),
        files=tuple(files),
    )

"""Time of one engine step (one forward pass over a continuous batch), from a roofline.

Modelled after cli99/llm-analysis: each part of the forward pass takes the longer of its
compute time (FLOPs / achieved FLOP/s) and its memory time (bytes / achieved bandwidth),
assuming the two overlap. Two parts are kept apart because they hit different limits:

* the GEMMs of the transformer blocks and the lm_head: FLOPs ``2 * params * tokens`` against
  reading every weight once per step. A decode-only step is weight-read bound; a step carrying a
  prompt chunk of a few hundred tokens becomes compute bound, which is why prefill chunks mixed
  into decode steps (vLLM's chunked prefill) stretch the steps everybody else is waiting on;
* attention: ``4 * heads * head_dim`` FLOPs per (query, key) pair per layer against reading
  the KV cache of every sequence in the batch, which grows with batch size and context.

Each layer also costs its kernels' floors, whatever their size: ramp-up and tail of every
GEMM and the elementwise kernels (norms, rotary embedding, activation), measured per GPU from
vLLM's kernel profiles (``GPU.layer_floor_s``). They decide how fast a small model decodes: a
1.5B model on an A100 reads its weights in 1.9 ms, and its 28 layers' floors take 1.6 ms.

On top of that, CPU-side costs that the roofline does not see and that do not shrink on a
faster GPU: a fixed overhead per step (engine-core loop, launches outside CUDA graphs), one per
sequence in the step (scheduling, input preparation, sampling, output serialisation), one per
request outside the engine (HTTP, tokenisation), and the API-server process's time per
generated token (``frontend_s_per_token``), which the simulator runs as a second queue in
series with the engine. Tensor parallelism divides the work over ``tp`` GPUs and adds two
all-reduces of the activations per layer.

Only six factors, applied uniformly to every GPU and model, are calibrated
(``coderig/plan/catalog/calibration.toml``), so the model transfers to hardware it never saw.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from coderig.plan.catalog import GPU, DType, Model

__all__ = ["Factors", "StepModel", "FACTOR_NAMES", "masked_pairs"]

#: Per-message latency of an NCCL all-reduce inside a node (llm-analysis uses 8 µs).
ALLREDUCE_LATENCY_S = 8e-6


@dataclass(frozen=True)
class Factors:
    """The calibrated efficiencies; see ``calibration.toml`` for their priors and meaning."""

    bandwidth_efficiency: float = 0.8
    compute_efficiency: float = 0.6
    step_overhead_ms: float = 1.0
    per_seq_overhead_us: float = 20.0
    request_overhead_ms: float = 10.0
    frontend_us_per_token: float = 50.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def with_values(self, **values: float) -> Factors:
        return replace(self, **values)


FACTOR_NAMES = tuple(f.name for f in fields(Factors))


def masked_pairs(rows: float, cells: float, own: float | None = None) -> float:
    """(query row, cell) pairs of a step where the cell belongs to another sequence.

    ``rows`` query rows scan all ``cells`` of the step's sequences; ``own`` is the sum over
    rows of the row's own sequence's context. A decode-only step of ``b`` sequences has one
    row each and its own contexts sum to ``cells``: ``(b - 1) * cells``, the default.
    """
    if own is None:
        own = cells
    return max(rows * cells - own, 0.0)


class StepModel:
    """Step-time function for one replica (``tp`` GPUs) of ``model`` in ``dtype`` on ``gpu``.

    Constants are folded once here because the simulator calls :meth:`step_time` for every
    step of every replica.
    """

    def __init__(
        self,
        gpu: GPU,
        model: Model,
        dtype: DType,
        factors: Factors,
        *,
        tensor_parallel: int = 1,
        kv_bytes_per_element: float = 2.0,
        unmeasured_matmul_fraction: float = 0.8,
        overlap: bool = True,
        layer_floor_s: float = 0.0,
        masked_pair_s: float = 0.0,
        moved_token_s: float = 0.0,
    ) -> None:
        tp = tensor_parallel
        self.gpu, self.model, self.dtype, self.factors, self.tp = gpu, model, dtype, factors, tp
        # Compute-bound work runs at a fraction (compute_efficiency) of what a large GEMM can
        # reach on this GPU (measured MAMF, see GPU.matmul_tflops), not of its datasheet peak.
        gemm = gpu.matmul_tflops(dtype.compute, unmeasured_matmul_fraction)
        attn = gpu.matmul_tflops("bf16", unmeasured_matmul_fraction)
        self.gemm_flops_per_s = gemm * 1e12 * tp * factors.compute_efficiency
        self.attn_flops_per_s = attn * 1e12 * tp * factors.compute_efficiency
        self.bytes_per_s = gpu.bandwidth_gbps * 1e9 * tp * factors.bandwidth_efficiency
        self.flops_per_token = 2.0 * model.block_params
        self.flops_per_logit = 2.0 * model.lm_head_params
        self.weight_bytes = model.weight_bytes_read_per_step(dtype)
        self.flops_per_pair = 4.0 * model.layers * model.attention_heads * model.head_dim
        self.kv_bytes_per_token = model.kv_bytes_per_token(kv_bytes_per_element)
        # Every GPU of a tensor-parallel replica runs every layer's kernels, so the floors add
        # up over layers, not over GPUs.
        self.kernel_floor_s = model.layers * layer_floor_s
        self.fixed_s = factors.step_overhead_ms * 1e-3 + self.kernel_floor_s
        self.per_seq_s = factors.per_seq_overhead_us * 1e-6
        self.request_overhead_s = factors.request_overhead_ms * 1e-3
        self.frontend_s_per_token = factors.frontend_us_per_token * 1e-6
        #: A GPU streams the weights while its tensor cores compute, so a step's GEMMs take the
        #: larger of the two (``max``). llama.cpp on a CPU does not hide one under the other:
        #: each token a step adds costs its dot products on top of the weight read (measured by
        #: ``coderig plan probe``: 1-4 decodes at once grow ~linearly, not flat then linear).
        self.overlap = overlap
        #: llama.cpp keeps every slot's sequence in one KV cache (``--kv-unified``), and each
        #: query row of a step scans the mask of every cell in it: the cells of the step's
        #: other sequences cost a check each (``ggml_compute_forward_flash_attn_ext``'s
        #: ``mv == -INFINITY`` skip), per (row, other sequence's cell). vLLM's paged attention
        #: reads only a sequence's own blocks: 0 there.
        self.masked_pair_s = masked_pair_s
        #: llama-server copies a slot's KV cells to its RAM prompt cache when the slot goes
        #: idle and back when a prompt continues it (``--cache-idle-slots``, on by default
        #: with ``--kv-unified``), in its one server loop: the step that starts a request
        #: waits for those copies, per token moved. 0 for vLLM (its prefix cache stays put).
        self.moved_token_s = moved_token_s
        if tp > 1:
            # Ring all-reduce moves 2 (tp-1)/tp of the activations over each GPU's link, twice
            # per layer (after attention and after the MLP).
            link = gpu.interconnect_gbps * 1e9
            self.comm_per_token_s = (
                2 * model.layers * model.hidden_size * 2.0 * 2 * (tp - 1) / tp / link
            )
            self.comm_fixed_s = 2 * model.layers * ALLREDUCE_LATENCY_S
        else:
            self.comm_per_token_s = 0.0
            self.comm_fixed_s = 0.0

    def step_time(
        self,
        tokens: float,
        logits: float,
        attn_pairs: float,
        kv_tokens_read: float,
        seqs: float,
        masked_pairs: float = 0.0,
    ) -> float:
        """Seconds for one forward pass.

        tokens          tokens computed in the step (1 per decode + each prefill chunk)
        logits          tokens whose logits are computed (decodes + prompts finishing prefill)
        attn_pairs      (query, key) pairs attended, summed over the batch
        kv_tokens_read  tokens of KV cache read (each sequence's context) plus those written
        seqs            sequences in the step
        masked_pairs    (query, cell) pairs where the cell is another sequence's of the step
                        (see :attr:`masked_pair_s`; :func:`masked_pairs` counts them)
        """
        compute = (self.flops_per_token * tokens + self.flops_per_logit * logits) / (
            self.gemm_flops_per_s
        )
        weights = self.weight_bytes / self.bytes_per_s
        gemm = max(compute, weights) if self.overlap else compute + weights
        attention = max(
            self.flops_per_pair * attn_pairs / self.attn_flops_per_s,
            self.kv_bytes_per_token * kv_tokens_read / self.bytes_per_s,
        )
        comm = self.comm_fixed_s + self.comm_per_token_s * tokens if self.tp > 1 else 0.0
        step = gemm + attention + comm + self.fixed_s + self.per_seq_s * seqs
        if self.masked_pair_s:
            step += self.masked_pair_s * masked_pairs
        return step

    def decode_constants(self) -> tuple[float, float, float, float, float]:
        """Constants of a decode-only step, for the simulator's fast path.

        With ``b`` decodes attending ``pairs`` tokens in total, :meth:`step_time` reduces to
        ``max(per_decode * b, weights) + per_pair * pairs + per_seq * b + fixed`` (the sum of
        the first two where the weight read does not overlap compute: :attr:`overlap`).
        """
        per_decode = (self.flops_per_token + self.flops_per_logit) / self.gemm_flops_per_s
        weights = self.weight_bytes / self.bytes_per_s
        per_pair = max(
            self.flops_per_pair / self.attn_flops_per_s, self.kv_bytes_per_token / self.bytes_per_s
        )
        per_seq = self.per_seq_s + (self.comm_per_token_s if self.tp > 1 else 0.0)
        fixed = self.fixed_s + (self.comm_fixed_s if self.tp > 1 else 0.0)
        return per_decode, weights, per_pair, per_seq, fixed

    # Convenience for tests and the zero-load floor ---------------------------------------------
    def prefill_time(
        self, prompt_tokens: int, max_batched_tokens: int | None = None, cached: int = 0
    ) -> float:
        """A lone prompt, in chunks of ``max_batched_tokens``; the last chunk yields a logit.

        ``cached`` leading tokens are already in the prefix cache: not computed, but attended.
        """
        chunk = max_batched_tokens or prompt_tokens
        done, total = min(int(cached), max(prompt_tokens - 1, 0)), 0.0
        while done < prompt_tokens:
            c = min(chunk, prompt_tokens - done)
            last = done + c >= prompt_tokens
            pairs = c * (done + (c + 1) / 2)
            total += self.step_time(c, 1 if last else 0, pairs, done + c, 1)
            done += c
        return total

    def decode_time(self, context: int) -> float:
        """One decode step of a lone sequence attending ``context`` tokens."""
        return self.step_time(1, 1, context, context, 1)

    def decode_batch_time(self, contexts: list[float]) -> float:
        """One decode-only step of several sequences, each attending its own context."""
        b, pairs = len(contexts), float(sum(contexts))
        return self.step_time(b, b, pairs, pairs, b, masked_pairs(b, pairs))

    def unloaded_latency(
        self,
        prompt_tokens: int,
        output_tokens: int,
        max_batched_tokens: int | None = None,
        cached: int = 0,
    ) -> tuple[float, float]:
        """(TTFT, full latency) of a request alone on the replica.

        Every step's token then goes through the API-server process (``frontend_s_per_token``)
        before it reaches the client, as in the simulator.
        """
        fe = self.frontend_s_per_token
        engine = self.prefill_time(prompt_tokens, max_batched_tokens, cached)
        engine += self.moved_token_s * min(cached, prompt_tokens)  # its prefix, back in a slot
        delivered = engine + fe
        ttft = delivered + self.request_overhead_s
        for generated in range(1, output_tokens):
            engine += self.decode_time(prompt_tokens + generated)
            delivered = max(engine, delivered) + fe
        return ttft, delivered + self.request_overhead_s

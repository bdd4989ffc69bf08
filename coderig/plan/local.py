"""The machine in front of you as a planning target: llama-server slots on this CPU.

A GPU enters the planner from its datasheet (bandwidth, matmul TFLOP/s) and six factors fitted
on published runs. This CPU has no datasheet worth trusting (the same "2 cores" is an AVX-512
Xeon or an EPYC without AVX2), so ``coderig plan probe`` measures it through what it will
plan for: ``coderig serve`` (the embedded model in llama-server, serve's defaults for threads,
slots and batch size), with streamed requests as editors send them. Four measurements:

* a one-token request: the overhead around the engine (HTTP, gateway, tokenisation);
* a lone prompt of a few hundred tokens: the compute speed (FLOP/s achieved by prefill);
* one sequence decoding after a short and after a long prompt, in turn: the memory speed (the
  weights are read once per step) and the KV cache read per token of context;
* every slot decoding at once: what each further sequence in a step adds.

On a CPU the gateway's and the client's work per streamed token runs on the cores llama.cpp
computes on, so the decode steps are timed from the stream (gaps between tokens), not from
llama-server's own ``timings``, which leave that out.

Those become the same :class:`~coderig.plan.roofline.StepModel` the GPUs use, with the
efficiencies at 1 (the speeds are already what this engine achieves here), and the same
simulator runs it with llama-server's limits (slots = running sequences, ``--batch-size`` =
tokens per step, decodes first and prompt chunks after, as llama-server's ``update_slots``
builds a batch). Nothing is fitted to latencies under load: ``benchmarks/local_plan_check.py``
compares the prediction with what ``coderig bench`` measures against ``coderig serve``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import httpx

from coderig.plan.catalog import GPU, DType, Model
from coderig.plan.memory import Fit
from coderig.plan.predict import Deployment, Prediction
from coderig.plan.roofline import Factors, StepModel, masked_pairs
from coderig.plan.simulate import Workload, cached_prompt_tokens, simulate

__all__ = [
    "LocalProbe",
    "default_probe_path",
    "load_probe",
    "local_step_model",
    "predict_local",
    "run_probe",
]

LOCAL = "local"
#: Decoded tokens per probe request, and the short prompt they follow.
DECODE_TOKENS = 48
DECODE_PROMPT = 16
REPEATS = 3
#: Tokens of a prompt's continuation the probe times after a short and a long cached prompt.
CHUNK_TOKENS = 64
#: llama.cpp's KV cache is f16 by default (``--cache-type-k/-v f16``).
KV_BYTES_PER_ELEMENT = 2.0
#: A prompt cache entry is reused by whole tokens, not blocks.
LLAMA_BLOCK = 1


@dataclass(frozen=True)
class LocalProbe:
    """What ``coderig plan probe`` measured, and on what."""

    cpu: str
    cores: int
    threads: int
    slots: int
    batch_size: int
    n_ctx: int  # tokens per slot
    model_path: str
    model_name: str
    ftype: str
    model_bytes: int
    # the architecture, from the GGUF's metadata (the roofline counts FLOPs and KV bytes)
    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    # measured: medians of the repetitions
    prefill_tokens: int
    prefill_s: float
    decode_step_s: dict[int, float] = field(default_factory=dict)  # running sequences -> s
    decode_long_s: float = 0.0  # one sequence decoding at a long context ...
    decode_long_context: float = 0.0  # ... of this many tokens (mean over its decode)
    decode_all_long_s: float = 0.0  # every slot decoding at once at a long context ...
    decode_all_long_context: float = 0.0  # ... of this many tokens each (0: not measured)
    # a CHUNK_TOKENS-token continuation of a cached prompt, time to its first token less the
    # request overhead, after a short and after a long cached prompt (0: not measured)
    chunk_short_s: float = 0.0
    chunk_short_cached: float = 0.0
    chunk_long_s: float = 0.0
    chunk_long_cached: float = 0.0
    request_overhead_s: float = 0.0
    measured_at: str = ""
    llama_server: str = ""

    def to_json(self) -> str:
        data = asdict(self)
        data["decode_step_s"] = {str(k): v for k, v in self.decode_step_s.items()}
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> LocalProbe:
        data = json.loads(text)
        data["decode_step_s"] = {int(k): float(v) for k, v in data["decode_step_s"].items()}
        return cls(**data)

    def model(self) -> Model:
        return Model(
            id=LOCAL + "-model",
            layers=self.layers,
            hidden_size=self.hidden_size,
            attention_heads=self.attention_heads,
            kv_heads=self.kv_heads,
            head_dim=self.head_dim,
            intermediate_size=self.intermediate_size,
            vocab_size=self.vocab_size,
            # The file's size over its parameter count is what a step reads per parameter;
            # a tied head is the embedding itself (SmolLM2, Qwen2.5 small sizes).
            tie_word_embeddings=True,
            source=self.model_path,
        )

    def decode_context(self) -> float:
        """Mean context a probe decode step attends: its prompt plus half its output."""
        return DECODE_PROMPT + DECODE_TOKENS / 2

    @property
    def n_params(self) -> int:
        return self.model().params

    def dtype(self) -> DType:
        return DType(id=self.ftype.lower(), bytes_per_param=self.model_bytes / self.n_params)

    def limits(self) -> dict:
        """llama-server's limits as the simulator takes them: slots run at once, tokens per
        forward pass, the KV cache of every slot, prompts reused by whole tokens."""
        return dict(
            max_batched_tokens=self.batch_size,
            max_seqs=self.slots,
            kv_capacity_tokens=self.n_ctx * self.slots,
            block_size=LLAMA_BLOCK,
        )


def default_probe_path() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(root) / "coderig" / "plan" / "local-probe.json"


def load_probe(path: Path | None = None) -> LocalProbe:
    path = path or default_probe_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"no probe of this machine at {path}: run `coderig plan probe` first (under a minute)"
        )
    try:
        return LocalProbe.from_json(path.read_text())
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValueError(
            f"{path} is not a probe this coderig can read ({exc}): run `coderig plan probe` again"
        ) from None


# --- from the measurements to a step model ----------------------------------------------------


def local_step_model(probe: LocalProbe) -> StepModel:
    """The roofline with this CPU's achieved speeds and no fitted factor.

    Six unknowns, six measurements, so the step model gives each measurement back: compute
    speed (FLOP/s) from the lone prompt; the weight read from a lone decode step at a short
    context; the cost of each token of context a decode step attends (the KV cache read) from
    the same step at a long context; what each running sequence adds from all slots decoding
    at once; what each sequence's cells cost the others' query rows
    (:func:`_masked_per_pair`) from all slots decoding at a long context; and what moving a
    cached prompt between a slot and llama-server's RAM cache costs per token
    (:func:`_moved_per_token`) from a continuation of a short and of a long cached prompt.

    How the weight read and the GEMMs' compute combine is read from the same measurements. A
    GPU streams the weights while its tensor cores compute, so a step takes the larger of the
    two. llama.cpp on a CPU mostly does not: each token a step adds costs its dot products on
    top of the weight read. Measured here (2-core Xeon, SmolLM2, 2026-12-05): 1, 2, 3 and 4
    decodes at once took 10.4, 14.9, 20.8 and 22.9 ms, which the larger-of-two form puts at
    10.1, 12.0, 16.8 and 22.4 ms and the sum at 10.4, 14.6, 18.8 and 23.0; a prompt's 30
    tokens joining a decode took 102 ms, against 96 and 99 ms. So the sum is taken
    (:attr:`StepModel.overlap` off), unless all slots decoding at once cost less than it
    allows even with no per-sequence cost: then this CPU hides compute under the weight read,
    and the larger-of-two form is solved instead.

    The KV read is kept apart from the weight read because llama.cpp reads its f16 KV cache
    far less efficiently than its weights (about 5 ns per cached token per step for SmolLM2 on
    a 2-core Xeon, where the weights' bandwidth would say 1.6 ns): it is expressed as the
    effective bytes read per token of context at the weights' bandwidth.
    """
    step = _additive_step_model(probe) or _overlapped_step_model(probe)
    step.moved_token_s = _moved_per_token(probe, step)
    return step


def _moved_per_token(probe: LocalProbe, step: StepModel) -> float:
    """Seconds per token llama-server copies between a slot and its RAM prompt cache.

    A continuation of a cached long prompt waits for it to be copied back into a slot (and
    for the slot the previous request left to be saved), in the server loop, before its step:
    what it took beyond a continuation of a short one, less what the step model gives the
    longer context (its attention and KV read), per token more. Measured on a 2-core Xeon
    (SmolLM2, 2026-12-05): 64 tokens more of a cached 768-token prompt took 285 ms against
    213 ms after a 16-token one, where the step model gives 244 and 198 ms: 35 us per token
    moved. 0 where the probe did not measure it."""
    more = probe.chunk_long_cached - probe.chunk_short_cached
    if probe.chunk_long_s <= 0 or probe.chunk_short_s <= 0 or more <= 0:
        return 0.0

    def chunk(cached: float) -> float:
        n = CHUNK_TOKENS
        return step.step_time(n, 1, n * (cached + (n + 1) / 2), cached + n, 1)

    modelled = chunk(probe.chunk_long_cached) - chunk(probe.chunk_short_cached)
    return max((probe.chunk_long_s - probe.chunk_short_s - modelled) / more, 0.0)


def _decode_per_pair(probe: LocalProbe) -> float:
    """Seconds per (sequence, context token) of a decode step: the KV read."""
    one, context = probe.decode_step_s[1], probe.decode_context()
    if probe.decode_long_s > one and probe.decode_long_context > context:
        return (probe.decode_long_s - one) / (probe.decode_long_context - context)
    return 0.0


def _masked_per_pair(probe: LocalProbe) -> float:
    """Seconds per (query row, cell of another running sequence) of a step.

    llama-server keeps its slots' sequences in one KV cache (``--kv-unified``), so each query
    row of a step scans every cell of the step's sequences and skips the others' by their mask.
    All slots decoding at a long context grow faster than the lone decode's KV read says:
    ``b`` rows each own ``L`` cells and skip ``(b - 1) L``. Measured on a 2-core Xeon
    (SmolLM2-135M, 2026-12-05), one to four sequences decoding at contexts of 90 to 1,270
    tokens: each own token of context costs 5.7, 5.7 and 7.2 us per step with 1, 2 and 4 at
    once, and each skipped cell 0.5-0.75 us. 0 where the probe did not measure it."""
    b = max(probe.decode_step_s)
    long, context = probe.decode_all_long_context, probe.decode_context()
    if b < 2 or probe.decode_all_long_s <= 0 or long <= context:
        return 0.0
    per_own = (probe.decode_all_long_s - probe.decode_step_s[b]) / (b * (long - context))
    return max((per_own - _decode_per_pair(probe)) / (b - 1), 0.0)


def _additive_step_model(probe: LocalProbe) -> StepModel | None:
    """A step is ``weight read + tokens x compute + attention + sequences x per-sequence
    cost``: linear, so the four equations are solved in turn. None when the measurements
    need a negative per-sequence cost (compute hidden under the weight read)."""
    model, dtype = probe.model(), probe.dtype()
    m = StepModel(_unit_gpu(probe), model, dtype, Factors(1.0, 1.0, 0.0, 0.0, 0.0, 0.0))
    p, context = probe.prefill_tokens, probe.decode_context()
    one, b = probe.decode_step_s[1], max(probe.decode_step_s)
    per_pair, masked = _decode_per_pair(probe), _masked_per_pair(probe)
    # The lone prompt less the lone decode step: p - 1 more tokens' GEMMs and the prompt's
    # attention (compute-bound: every pair's FLOPs), less the decode's KV read.
    prompt_flops = m.flops_per_token * (p - 1) + m.flops_per_pair * p * (p + 1) / 2
    flops_per_s = prompt_flops / max(probe.prefill_s - one + per_pair * context, one)
    per_decode = (m.flops_per_token + m.flops_per_logit) / flops_per_s
    per_seq = 0.0
    if b > 1:
        per_seq = (
            (probe.decode_step_s[b] - one) / (b - 1)
            - per_decode
            - per_pair * context
            - masked * masked_pairs(b, b * context) / (b - 1)
        )
        if per_seq < 0:
            return None
    weights_s = one - per_decode - per_pair * context - per_seq
    if weights_s <= 0:
        return None
    return _local_step(
        probe, flops_per_s, m.weight_bytes / weights_s, per_seq, per_pair, masked, overlap=False
    )


def _overlapped_step_model(probe: LocalProbe) -> StepModel:
    """A step is ``max(GEMM compute, weight read) + attention + per-sequence cost``, solved by
    a few rounds of substitution (each unknown depends on the others only weakly)."""
    model, dtype = probe.model(), probe.dtype()
    m = StepModel(_unit_gpu(probe), model, dtype, Factors(1.0, 1.0, 0.0, 0.0, 0.0, 0.0))
    p, context = probe.prefill_tokens, probe.decode_context()
    one = probe.decode_step_s[1]
    b = max(probe.decode_step_s)
    per_pair, masked = _decode_per_pair(probe), _masked_per_pair(probe)
    per_seq, weights_s, flops_per_s = 0.0, one, 1.0
    bytes_per_s = m.weight_bytes / one
    for _ in range(8):
        prefill_flops = (
            m.flops_per_token * p + m.flops_per_logit + m.flops_per_pair * p * (p + 1) / 2
        )
        flops_per_s = prefill_flops / max(probe.prefill_s - per_seq, probe.prefill_s / 2)
        kv_bytes = max(m.kv_bytes_per_token, per_pair * bytes_per_s)

        def attention(
            seqs: int, flops_per_s: float = flops_per_s, bw: float = bytes_per_s, kv=kv_bytes
        ) -> float:
            own = max(m.flops_per_pair * seqs * context / flops_per_s, kv * seqs * context / bw)
            return own + masked * masked_pairs(seqs, seqs * context)

        gemm_1 = (m.flops_per_token + m.flops_per_logit) / flops_per_s
        if b > 1:
            # the weight read still covers b sequences' GEMMs (the usual case on a CPU) ...
            per_seq = (probe.decode_step_s[b] - one - attention(b) + attention(1)) / (b - 1)
            if one - attention(1) - per_seq < b * gemm_1:  # ... or compute is the larger
                per_seq = (probe.decode_step_s[b] - b * gemm_1 - attention(b)) / b
            per_seq = max(0.0, per_seq)
        weights_s = max(one - attention(1) - per_seq, gemm_1)
        bytes_per_s = m.weight_bytes / weights_s
    return _local_step(probe, flops_per_s, bytes_per_s, per_seq, per_pair, masked)


def _local_step(
    probe: LocalProbe,
    flops_per_s: float,
    bytes_per_s: float,
    per_seq: float,
    per_pair: float,
    masked: float = 0.0,
    *,
    overlap: bool = True,
) -> StepModel:
    gpu = _unit_gpu(probe, tflops=flops_per_s / 1e12, bandwidth_gbps=bytes_per_s / 1e9)
    factors = Factors(
        bandwidth_efficiency=1.0,
        compute_efficiency=1.0,
        step_overhead_ms=0.0,
        per_seq_overhead_us=per_seq * 1e6,
        request_overhead_ms=probe.request_overhead_s * 1e3,
        frontend_us_per_token=0.0,  # llama-server streams from the process that decodes
    )
    step = StepModel(
        gpu,
        probe.model(),
        probe.dtype(),
        factors,
        kv_bytes_per_element=KV_BYTES_PER_ELEMENT,
        overlap=overlap,
        masked_pair_s=masked,
    )
    step.kv_bytes_per_token = max(step.kv_bytes_per_token, per_pair * bytes_per_s)
    return step


def _unit_gpu(probe: LocalProbe, tflops: float = 1.0, bandwidth_gbps: float = 1.0) -> GPU:
    return GPU(
        id=LOCAL,
        name=probe.cpu,
        memory_gib=0.0,
        bandwidth_gbps=bandwidth_gbps,
        bf16_tflops=tflops,
        bf16_tflops_mamf=tflops,  # achieved, not a datasheet peak
        source="coderig plan probe " + probe.measured_at,
    )


def gateway_holds() -> dict:
    """What ``coderig serve`` does by default in front of llama-server that the simulator
    models: a prompt mostly not cached waits for the replica to run nothing
    (``--cold-prompt-tokens``, ``--cold-hold``)."""
    from coderig.engines.llamacpp import LlamaServerEngine
    from coderig.serve.settings import ServeSettings

    return {
        "cold_tokens": ServeSettings.model_fields["cold_prompt_tokens"].default,
        "cold_hold": LlamaServerEngine.cold_hold,
    }


def admission() -> dict:
    """``coderig serve``'s default admission control, which sheds an attack past the knee
    (``--max-queue``, ``--max-queue-wait``)."""
    from coderig.serve.settings import ServeSettings

    fields = ServeSettings.model_fields
    return {
        "max_queue": fields["max_queue"].default,
        "max_queue_wait": fields["max_queue_wait"].default,
    }


def predict_local(probe: LocalProbe, workload: Workload) -> Prediction:
    """Simulate ``workload`` on one llama-server replica as ``coderig serve`` runs it here."""
    step = local_step_model(probe)
    limits = probe.limits()
    kv_tokens = limits["kv_capacity_tokens"]
    result = simulate(step, workload, replicas=1, **limits, **gateway_holds(), **admission())
    deployment = Deployment(LOCAL, probe.model_name, probe.ftype.lower(), 1, 1)
    fit = Fit(
        gpu=LOCAL,
        model=probe.model_name,
        dtype=probe.ftype.lower(),
        tensor_parallel=1,
        max_model_len=probe.n_ctx,
        weights_gib_per_gpu=probe.model_bytes / 2**30,
        usable_gib_per_gpu=0.0,
        kv_gib_per_gpu=kv_tokens * step.kv_bytes_per_token / 2**30,
        kv_tokens=kv_tokens,
        max_batch=probe.slots,
        fits=True,
    )
    return Prediction(deployment, workload, result, fit)


def probe_summary(probe: LocalProbe) -> str:
    """One line of what the probe measured, and the speeds it makes of it."""
    step = local_step_model(probe)
    decode = ", ".join(
        f"{n} running {s * 1e3:.1f} ms" for n, s in sorted(probe.decode_step_s.items())
    )
    return (
        f"{probe.cpu}, {probe.threads} threads, {probe.slots} slots (probed {probe.measured_at}): "
        f"prefill {probe.prefill_tokens / probe.prefill_s:.0f} tokens/s "
        f"({step.gemm_flops_per_s / 1e9:.0f} GFLOP/s), decode step {decode} "
        f"({step.bytes_per_s / 1e9:.1f} GB/s), request overhead "
        f"{probe.request_overhead_s * 1e3:.1f} ms; per step, {_decode_per_pair(probe) * 1e6:.2f} "
        f"us per token of context and {step.masked_pair_s * 1e6:.2f} us per other sequence's "
        f"cell a query row skips; {step.moved_token_s * 1e6:.0f} us per cached token moved "
        "between a slot and the RAM cache"
    )


def local_unloaded_latency(
    probe: LocalProbe, prompt: int, output: int, prefix_cache_hit: float = 0.0
) -> tuple[float, float]:
    step = local_step_model(probe)
    cached = cached_prompt_tokens(prompt, prefix_cache_hit, LLAMA_BLOCK)
    return step.unloaded_latency(prompt, output, probe.batch_size, cached)


# --- the probe ----------------------------------------------------------------------------------


def run_probe(
    model_path: Path,
    *,
    threads: int,
    slots: int,
    batch_size: int,
    n_ctx: int,
    llama_server: str | None = None,
    prefill_tokens: int = 384,
    say: Callable[[str], None] = lambda _: None,
) -> LocalProbe:
    """Start ``coderig serve`` on ``model_path``, measure it, stop it (under a minute).

    Through the whole serving path, as an editor meets it: on a CPU the gateway's and the
    client's work per streamed token competes with llama.cpp's threads for the same cores, so
    a decode step served is slower than llama-server timing itself alone.
    """
    from coderig.bench.workload import GgufTokenizer
    from coderig.serve.pool import free_port

    cutter = GgufTokenizer(str(model_path))
    short = iter(_prompts(cutter, DECODE_PROMPT, 1 + REPEATS * (1 + slots), seed=1))
    tiny = _prompts(cutter, 1, REPEATS + 2, seed=2)
    long = iter(_prompts(cutter, prefill_tokens, REPEATS, seed=3))
    # The KV read per token of context is the slope between a short and a long decode: the
    # longer the lever, the less a drift of the machine's speed between the two bends it.
    long_context = min(2 * prefill_tokens, n_ctx - DECODE_TOKENS - 8)
    long_prompts = _prompts(cutter, long_context, REPEATS, seed=4)
    longer = iter(long_prompts)
    suffixes = iter(_prompts(cutter, CHUNK_TOKENS, 2 * REPEATS, seed=6))
    chunk_bases = _prompts(cutter, DECODE_PROMPT, REPEATS, seed=7)
    all_long = iter(_prompts(cutter, long_context, slots, seed=5))
    port = free_port()
    argv = [
        sys.executable, "-m", "coderig", "serve", "--model", str(model_path),
        "--port", str(port), "--threads-per-replica", str(threads), "--slots", str(slots),
        "--batch-size", str(batch_size), "--max-model-len", str(n_ctx),
        "--max-queue-wait", "off",
    ]  # fmt: skip
    if llama_server:
        argv += ["--llama-server", llama_server]
    env = {k: v for k, v in os.environ.items() if k not in ("CODERIG_API_KEYS",)}
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
            _wait_healthy(client, proc, log)
            say("warming up")
            _stream(client, next(short), 4)
            say("request overhead: a one-token prompt, one token out")
            overhead = statistics.median(_stream(client, p, 1).wall for p in tiny)
            say(f"prefill: a lone {prefill_tokens}-token prompt, {REPEATS} times")
            runs = [_stream(client, next(long), 1) for _ in range(REPEATS)]
            prefill = statistics.median(r.wall for r in runs) - overhead
            prompt_tokens = round(statistics.median(r.prompt_tokens for r in runs))
            say(
                f"decode: one sequence, {DECODE_TOKENS} tokens after a {DECODE_PROMPT}- and "
                f"after a {long_context}-token prompt, in turn"
            )
            decode_one, decode_long, long_tokens = _decode_short_and_long(client, short, longer)
            say(
                f"prefill: {CHUNK_TOKENS} tokens more of a cached {DECODE_PROMPT}- and "
                f"{long_context}-token prompt, in turn"
            )
            chunks = _chunks_after(client, chunk_bases, long_prompts, suffixes, overhead)
            decode = {1: decode_one}
            all_long_s = all_long_tokens = 0.0
            if slots > 1:
                say(f"decode: {slots} sequences at once, {DECODE_TOKENS} tokens each")
                decode[slots] = _decode_step(client, short, slots)
                say(f"decode: {slots} sequences at once after {long_context}-token prompts")
                all_long_s = _decode_step(client, all_long, slots, rounds=1)
                all_long_tokens = long_context + DECODE_TOKENS / 2
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    meta = cutter.metadata
    return LocalProbe(
        cpu=_cpu_name(),
        cores=os.cpu_count() or 1,
        threads=threads,
        slots=slots,
        batch_size=batch_size,
        n_ctx=n_ctx,
        model_path=str(model_path),
        model_name=meta.get("general.basename") or meta.get("general.name") or model_path.stem,
        ftype=FILE_TYPES.get(int(meta.get("general.file_type", -1)), "gguf"),
        model_bytes=model_path.stat().st_size,
        **_architecture(meta),
        vocab_size=cutter.vocab_size,
        prefill_tokens=prompt_tokens,
        prefill_s=prefill,
        decode_step_s=decode,
        decode_long_s=decode_long,
        decode_long_context=long_tokens + DECODE_TOKENS / 2,
        decode_all_long_s=all_long_s,
        decode_all_long_context=all_long_tokens,
        **chunks,
        request_overhead_s=overhead,
        measured_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        llama_server=llama_server or "as coderig serve finds it",
    )


#: llama.cpp's ``general.file_type`` numbers (``enum llama_ftype``) for the common files.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 32: "BF16",
}  # fmt: skip


def _architecture(meta: dict[str, str]) -> dict[str, int]:
    """The transformer's shape from GGUF metadata (``<arch>.block_count`` and so on)."""
    arch = meta.get("general.architecture", "llama")

    def get(key: str, default: str | None = None) -> int:
        return int(meta.get(f"{arch}.{key}") or meta[f"{arch}.{default or key}"])

    heads, hidden = get("attention.head_count"), get("embedding_length")
    return {
        "layers": get("block_count"),
        "hidden_size": hidden,
        "attention_heads": heads,
        "kv_heads": get("attention.head_count_kv", "attention.head_count"),
        "head_dim": int(meta.get(f"{arch}.attention.key_length") or hidden // heads),
        "intermediate_size": get("feed_forward_length"),
    }


@dataclass(frozen=True)
class _Streamed:
    wall: float  # seconds from sending to the last byte
    token_times: list[float]  # seconds from sending to each token
    prompt_tokens: int
    started: float = 0.0  # time.perf_counter() when it was sent


def _stream(client: httpx.Client, prompt: str, max_tokens: int) -> _Streamed:
    """One streamed completion through the gateway, exactly ``max_tokens`` out."""
    body = {
        "prompt": prompt,
        "max_tokens": max_tokens,
        "min_tokens": max_tokens,  # llama-server: ignore_eos
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    from coderig.bench.streams import openai_text, sse_json

    started = time.perf_counter()
    times: list[float] = []
    prompt_tokens = 0
    with client.stream("POST", "/v1/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            event = sse_json(line.encode())
            if event is None:
                continue
            if event.get("usage"):
                prompt_tokens = int(event["usage"].get("prompt_tokens") or 0)
            if openai_text(event):
                times.append(time.perf_counter() - started)
    return _Streamed(time.perf_counter() - started, times, prompt_tokens, started)


def _decode_step(
    client: httpx.Client, prompts: Iterator[str], running: int, rounds: int = REPEATS
) -> float:
    """Seconds per decode step with ``running`` sequences decoding together: the median gap
    between tokens while every one of them decodes (after the last one's prefill, before the
    first one ends), over ``rounds`` rounds."""
    gaps: list[float] = []
    with ThreadPoolExecutor(running) as pool:
        for _ in range(rounds):
            batch = [next(prompts) for _ in range(running)]
            gaps += _together_gaps(
                list(pool.map(lambda p: _stream(client, p, DECODE_TOKENS), batch))
            )
    return statistics.median(gaps)


def _together_gaps(runs: list[_Streamed]) -> list[float]:
    """Gaps between tokens of each stream while all of them decode at once."""
    ticks = [[r.started + t for t in r.token_times] for r in runs if r.token_times]
    start = max(t[0] for t in ticks)
    stop = min(t[-1] for t in ticks)
    gaps = [
        b - a for t in ticks for a, b in zip(t, t[1:], strict=False) if a >= start and b <= stop
    ]
    return gaps or [g for r in runs for g in _step_gaps(r)]


def _step_gaps(run: _Streamed) -> list[float]:
    """Seconds between consecutive tokens of a stream, after the first (which follows the
    prefill): one per decode step."""
    times = run.token_times
    return [b - a for a, b in zip(times[1:], times[2:], strict=False)]


def _decode_short_and_long(
    client: httpx.Client, short: Iterator[str], long: Iterator[str]
) -> tuple[float, float, int]:
    """One sequence decoding after a short and after a long prompt, alternately: seconds per
    step at each (median gap between tokens) and the long prompt's tokens."""
    gaps: dict[bool, list[float]] = {False: [], True: []}
    tokens: list[int] = []
    for _ in range(REPEATS):
        for is_long, prompts in ((False, short), (True, long)):
            run = _stream(client, next(prompts), DECODE_TOKENS)
            gaps[is_long] += _step_gaps(run)
            if is_long:
                tokens.append(run.prompt_tokens)
    return (
        statistics.median(gaps[False]),
        statistics.median(gaps[True]),
        round(statistics.median(tokens)),
    )


def _chunks_after(
    client: httpx.Client,
    short: list[str],
    long: list[str],
    suffixes: Iterator[str],
    overhead: float,
) -> dict[str, float]:
    """A continuation of a cached short and a cached long prompt, in turn: the time to its
    first token less the request overhead, and how many tokens were cached. The long prompts
    are those the decode timings sent, so llama-server has them in its RAM cache; each short
    one is sent once first."""
    times: dict[bool, list[float]] = {False: [], True: []}
    cached: dict[bool, list[int]] = {False: [], True: []}
    for base_short, base_long in zip(short, long, strict=False):
        for is_long, base in ((False, base_short), (True, base_long)):
            if not is_long:
                _stream(client, base, 1)
            run = _stream(client, base + next(suffixes), 1)
            times[is_long].append(run.token_times[0] - overhead)
            cached[is_long].append(max(run.prompt_tokens - CHUNK_TOKENS, 0))
    return {
        "chunk_short_s": statistics.median(times[False]),
        "chunk_short_cached": statistics.median(cached[False]),
        "chunk_long_s": statistics.median(times[True]),
        "chunk_long_cached": statistics.median(cached[True]),
    }


def _prompts(tokenizer, tokens: int, count: int, seed: int) -> list[str]:
    """``count`` distinct slices of real code, ``tokens`` long in the model's own tokens: the
    prompts ``coderig bench attack --prompt-tokens N --tokenizer GGUF`` sends."""
    from coderig.bench.workload import DEFAULT_CHARS_PER_TOKEN, prompt_slices

    chars = max(1, round(tokens * DEFAULT_CHARS_PER_TOKEN)) * 2
    return [tokenizer.cut(text, tokens) for text in prompt_slices(chars, count, seed=seed)]


def _wait_healthy(
    client: httpx.Client, proc: subprocess.Popen, log: IO[bytes], timeout: float = 300
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"coderig serve exited with code {proc.returncode}:\n{tail}")
        try:
            if client.get("/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"coderig serve was not ready after {timeout:.0f} s")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()

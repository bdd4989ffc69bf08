"""Which requests wait for their replica to run nothing (``--cold-hold``): those whose prompt is
mostly not cached there, as far as the prefix router knows."""

from __future__ import annotations

from pathlib import Path

from coderig.engines.llamacpp import LlamaServerEngine
from coderig.serve.assembly import build_gateway
from coderig.serve.generate import GenerationRequest, Generator
from coderig.serve.metrics import GatewayMetrics
from coderig.serve.pool import ReplicaPool, ReplicaState
from coderig.serve.routing import Router
from tests.support.inprocess import in_process_settings

CODE = "".join(f"def function_{i}(x):\n    return x + {i}\n\n" for i in range(20))


def words(text: str) -> int:
    return len(text.split())


def make_generator(tmp_path: Path, routing: str = "prefix", **options) -> Generator:
    engine = LlamaServerEngine(Path("llama-server"), Path("unused.gguf"), threads=1)
    pool = ReplicaPool(engine, 1, log_dir=tmp_path)
    for replica in pool.replicas:
        replica.state = ReplicaState.READY
    return Generator(pool, GatewayMetrics(), words, router=Router(pool, routing), **options)


def request(prompt: str) -> GenerationRequest:
    return GenerationRequest(
        route="infill", prompt=prompt, prompt_tokens=words(prompt), max_tokens=16, sampling={}
    )


def held(generator: Generator, prompt: str, computed: bool = True) -> float:
    """The hold the request gets; then, if ``computed``, its replica computes the prompt."""
    decision = generator.choose_replica(request(prompt))
    hold = generator.hold_for(decision, request(prompt))
    if computed:
        generator.router.record_computed(decision.replica, prompt)
    return hold


def test_a_developers_first_prompt_is_held_and_their_next_one_is_not(tmp_path):
    generator = make_generator(tmp_path, cold_hold=1.0, cold_prompt_tokens=20)
    assert held(generator, CODE) == 1.0  # nothing of it is cached
    assert held(generator, CODE + "def next_one(y):\n") == 0.0  # only the new line is not
    assert generator.metrics.cold_held._value.get() == 1


def test_a_prompt_admitted_but_never_computed_leaves_the_next_one_cold(tmp_path):
    # the first request was cancelled while it waited for a slot: the engine never saw it
    generator = make_generator(tmp_path, cold_hold=1.0, cold_prompt_tokens=20)
    assert held(generator, CODE, computed=False) == 1.0
    assert held(generator, CODE + "def next_one(y):\n") == 1.0


def test_a_short_prompt_is_never_held(tmp_path):
    generator = make_generator(tmp_path, cold_hold=1.0, cold_prompt_tokens=20)
    assert held(generator, "def f(x):\n    return") == 0.0


def test_a_new_file_is_cold_even_after_another_was_cached(tmp_path):
    generator = make_generator(tmp_path, cold_hold=1.0, cold_prompt_tokens=20)
    held(generator, CODE)
    assert held(generator, CODE.replace("function", "method")) == 1.0


def test_nothing_is_held_when_off_or_when_the_router_knows_no_prefixes(tmp_path):
    assert held(make_generator(tmp_path, cold_hold=0.0), CODE) == 0.0
    least_busy = make_generator(tmp_path, "least-busy", cold_hold=1.0, cold_prompt_tokens=20)
    assert held(least_busy, CODE) == 0.0


def test_the_hold_defaults_to_the_engines_and_an_explicit_one_wins(tmp_path, fake_upstream_url):
    # a GPU engine (or any upstream) batches a prefill chunk with the decodes almost for free,
    # llama.cpp on a CPU does not
    assert LlamaServerEngine.cold_hold == 1.0
    upstream = fake_upstream_url  # the gateway is built, not started
    default = build_gateway(in_process_settings(upstream, tmp_path))
    assert default.generator.cold_hold == 0.0
    chosen = build_gateway(in_process_settings(upstream, tmp_path, cold_hold="250ms"))
    assert chosen.generator.cold_hold == 0.25
    off = build_gateway(in_process_settings(upstream, tmp_path, cold_hold="off"))
    assert off.generator.cold_hold == 0.0

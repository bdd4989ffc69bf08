"""Routing policy decisions, on a pool whose replicas are real objects in known states."""

from __future__ import annotations

from pathlib import Path

import pytest

from coderig.engines.llamacpp import LlamaServerEngine
from coderig.serve.pool import NoReplicaAvailable, ReplicaPool, ReplicaState
from coderig.serve.routing import BLOCK_CHARS, Router, prefix_hashes


def make_pool(tmp_path: Path, replicas: int) -> ReplicaPool:
    engine = LlamaServerEngine(Path("llama-server"), Path("unused.gguf"), threads=1)
    pool = ReplicaPool(engine, replicas, log_dir=tmp_path)
    for replica in pool.replicas:
        replica.state = ReplicaState.READY
    return pool


FILE = "".join(f"def function_{i}(x):\n    return x + {i}\n\n" for i in range(40))


def test_prefix_hashes_are_stable_and_cover_whole_blocks_only():
    hashes = prefix_hashes(FILE)
    assert len(hashes) == len(FILE) // BLOCK_CHARS
    assert prefix_hashes(FILE + "more text")[: len(hashes)] == hashes
    assert prefix_hashes("x" + FILE)[0] != hashes[0]


def test_a_growing_prompt_follows_the_replica_that_holds_its_prefix(tmp_path):
    pool = make_pool(tmp_path, 3)
    router = Router(pool, "prefix")
    first = router.choose(FILE)
    router.record(first, FILE, None)
    for extra in ("d", "def ", "def g(", "def g(y):\n    return"):
        decision = router.choose(FILE + extra)
        assert decision.replica is first.replica
        assert decision.reason == "prefix"
        assert decision.matched_chars >= len(FILE) - BLOCK_CHARS
        router.record(decision, FILE + extra, None)


def test_a_busy_prefix_holder_loses_the_request_to_an_idle_replica(tmp_path):
    pool = make_pool(tmp_path, 2)
    router = Router(pool, "prefix", max_imbalance=2)
    first = router.choose(FILE)
    router.record(first, FILE, None)
    first.replica.queued = 3  # three requests already waiting there
    decision = router.choose(FILE + "x")
    assert decision.replica is not first.replica
    assert decision.reason == "least-busy"


def test_fresh_prompts_on_an_idle_pool_are_spread_round_robin(tmp_path):
    pool = make_pool(tmp_path, 2)
    router = Router(pool, "prefix")
    chosen = []
    for i in range(4):
        prompt = f"# unrelated file {i}\n" + "y = 1\n" * 60
        decision = router.choose(prompt)
        router.record(decision, prompt, None)
        chosen.append(decision.replica.index)
    assert sorted(chosen) == [0, 0, 1, 1]


def test_a_session_sticks_before_the_prompt_is_long_enough(tmp_path):
    pool = make_pool(tmp_path, 3)
    router = Router(pool, "prefix")
    first = router.choose("short", session="alice")
    router.record(first, "short", "alice")
    for _ in range(3):
        assert router.choose("tiny", session="alice").replica is first.replica


def test_least_busy_policy_ignores_prefixes(tmp_path):
    pool = make_pool(tmp_path, 2)
    router = Router(pool, "least-busy")
    first = router.choose(FILE)
    router.record(first, FILE, None)
    first.replica.active = 1
    assert router.choose(FILE).replica is not first.replica


def test_no_ready_replica_is_an_error(tmp_path):
    pool = make_pool(tmp_path, 2)
    for replica in pool.replicas:
        replica.state = ReplicaState.RESTARTING
    with pytest.raises(NoReplicaAvailable):
        Router(pool).choose("x")


def test_unknown_policy_is_refused(tmp_path):
    with pytest.raises(ValueError, match="least-busy or prefix"):
        Router(make_pool(tmp_path, 1), "random")


@pytest.mark.e2e
def test_a_typing_developer_stays_on_one_replica_and_hits_its_prompt_cache(tmp_path):
    import httpx

    from tests.support.engine import engine_metrics
    from tests.support.server import start_server

    server = start_server(tmp_path, "--replicas", "2", "--threads-per-replica", "1")
    try:
        replicas = server.ready_info()["replicas"]
        text = FILE[:1200]
        for step in range(5):
            text += f"value_{step} = function_{step}(1)\n"
            response = httpx.post(
                f"{server.base_url}/completions",
                json={"prompt": text, "max_tokens": 2},
                timeout=120,
            )
            assert response.status_code == 200
        stats = [engine_metrics(r["url"]) for r in replicas]
        computed = [s["llamacpp:prompt_tokens_total"] for s in stats]
        assert sorted(c == 0 for c in computed) == [False, True]  # one replica did all the work
        busy = next(s for s in stats if s["llamacpp:prompt_tokens_total"] > 0)
        # Every request after the first reused nearly the whole previous prompt.
        cached = busy["llamacpp:prompt_tokens_cached_total"]
        assert cached > 0.7 * (cached + busy["llamacpp:prompt_tokens_total"])
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'coderig_routed_requests_total{reason="prefix"} 4.0' in metrics
    finally:
        server.stop()

"""A llama.cpp replica: llama-cpp-python's own OpenAI server, with what the gateway needs.

This runs the same server as ``python -m llama_cpp.server`` (its settings, routes and schemas:
``create_app`` from ``llama_cpp.server.app``) and replaces only its SSE publisher, with one that

* counts what the replica does, for ``GET /coderig/stats`` (requests, tokens generated, prompt
  tokens reused from the KV cache, cancellations, busy) — which is also the health route, since
  ``llama_cpp.server``'s own routes wait for the model lock while a generation runs;
* reports the prompt tokens and the cached ones in the ``usage`` of the last chunk (llama.cpp's
  stream has no usage), so the gateway can count prompt-cache hits;
* closes the token generator before the model lock is released when the client leaves, so the
  abandoned generation stops within a token and can never run beside the next one;
* bounds the RAM prompt cache (``--cache true``) for real (:class:`CompactRAMCache`).

Tokens are still produced one per worker-thread hop, as in the stock publisher. A version that
decoded ahead in its own thread was measured (benchmarks/replica_streaming.py): on 2 cores with
llama.cpp using both, the event loop then competes with llama.cpp's threads and streaming got
2.3x slower, while the stock hop costs ~0.35 ms per token.

Run it as ``python -m coderig.engines.llamacpp_server`` with llama_cpp.server's own flags.
"""

from __future__ import annotations

import contextlib
import json
import sys
import typing

import anyio
import llama_cpp
import llama_cpp.server.app as server_app
from anyio.streams.memory import MemoryObjectSendStream
from fastapi import Request
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool


class CompactRAMCache(llama_cpp.LlamaRAMCache):
    """llama-cpp-python's RAM prompt cache, with its memory actually bounded.

    Each saved state also copies the logits of *every* evaluated token (``scores``: tokens x
    vocabulary x 4 bytes — 137 MB for a 700-token prompt of SmolLM2, 425 MB for Qwen's
    vocabulary) and the cache counts none of it against its capacity: a 256 MiB cache grew a
    replica by gigabytes in the soak benchmark. Only the last row can matter (llama.cpp always
    re-evaluates the last prompt token, and ``load_state`` broadcasts a single row), so keep
    that one, and count every byte kept.
    """

    def __setitem__(self, key, value) -> None:
        if value.scores.ndim == 2 and value.scores.shape[0] > 1:
            value.scores = value.scores[-1:].copy()
        super().__setitem__(key, value)

    @property
    def cache_size(self) -> int:
        return sum(
            state.llama_state_size + state.scores.nbytes + state.input_ids.nbytes
            for state in self.cache_state.values()
        )


class ReplicaStats:
    """Counters the gateway and tests read from ``GET /coderig/stats``."""

    def __init__(self) -> None:
        self.requests = 0
        self.tokens_generated = 0  # streamed chunks; one per token except held-back stop text
        self.prompt_tokens = 0
        self.cached_prompt_tokens = 0
        self.cancelled = 0
        self.busy = False

    def as_dict(self) -> dict:
        return dict(vars(self))


STATS = ReplicaStats()


def prompt_cache_usage(llama, prompt: object) -> dict | None:
    """Prompt tokens, and how many of them llama.cpp will reuse from its KV cache.

    llama-cpp-python reuses the longest common prefix of the new prompt with the tokens already
    evaluated (all but the prompt's last token, which it always re-evaluates for logits).
    """
    if not isinstance(prompt, str) or not prompt:
        return None
    tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
    if llama._model.add_bos_token() and llama.token_bos() >= 0:
        tokens = [llama.token_bos(), *tokens]
    cached = 0
    if llama.n_tokens > 0:
        cached = llama.longest_token_prefix(llama._input_ids.tolist(), tokens[:-1])
    if llama.cache is not None:
        # With a RAM prompt cache, llama-cpp-python loads the stored state sharing the longest
        # prefix when it beats what is already evaluated.
        key = llama.cache._find_longest_prefix_key(tuple(tokens))
        if key is not None:
            cached = max(cached, llama.longest_token_prefix(list(key), tokens[:-1]))
    return {"prompt_tokens": len(tokens), "prompt_tokens_details": {"cached_tokens": cached}}


async def get_event_publisher(
    request: Request,
    inner_send_chan: MemoryObjectSendStream[typing.Any],
    body,
    body_model: str | None,
    llama_call,
    kwargs,
) -> None:
    """Drop-in for ``llama_cpp.server.app.get_event_publisher`` (same arguments, same events)."""
    server_settings = next(server_app.get_server_settings())
    interrupt_requests = server_settings.interrupt_requests if server_settings else False
    async with contextlib.asynccontextmanager(server_app.get_llama_proxy)() as llama_proxy:
        llama = server_app.prepare_request_resources(body, llama_proxy, body_model, kwargs)
        async with inner_send_chan:
            usage = prompt_cache_usage(llama, kwargs.get("prompt"))
            if usage is not None:
                STATS.prompt_tokens += usage["prompt_tokens"]
                STATS.cached_prompt_tokens += usage["prompt_tokens_details"]["cached_tokens"]
            STATS.requests += 1
            STATS.busy = True
            iterator = await run_in_threadpool(llama_call, llama, **kwargs)
            finished = False
            try:
                async for chunk in iterate_in_threadpool(iterator):
                    choices = chunk.get("choices") or [{}]
                    if choices[0].get("text") or choices[0].get("delta", {}).get("content"):
                        STATS.tokens_generated += 1
                    if choices[0].get("finish_reason") and usage is not None:
                        chunk["usage"] = usage  # prompt + cached counts for the gateway
                    await inner_send_chan.send(dict(data=json.dumps(chunk)))
                    if await request.is_disconnected():
                        raise anyio.get_cancelled_exc_class()()
                    if interrupt_requests and server_app.llama_outer_lock.locked():
                        await inner_send_chan.send(dict(data="[DONE]"))
                        raise anyio.get_cancelled_exc_class()()
                await inner_send_chan.send(dict(data="[DONE]"))
                finished = True
            finally:
                # Close the generator now, in a worker thread and shielded from cancellation:
                # left to the garbage collector, its cleanup could run during the next request.
                with anyio.CancelScope(shield=True):
                    await run_in_threadpool(iterator.close)
                STATS.busy = False
                if not finished:
                    STATS.cancelled += 1


def main(argv: list[str] | None = None) -> None:
    import argparse

    import uvicorn
    from llama_cpp.server.cli import add_args_from_model, parse_model_from_args
    from llama_cpp.server.settings import ModelSettings, ServerSettings, Settings

    parser = argparse.ArgumentParser(description="coderig's llama.cpp replica")
    add_args_from_model(parser, Settings)
    args = parser.parse_args(argv)
    server_settings = parse_model_from_args(ServerSettings, args)
    model_settings = [parse_model_from_args(ModelSettings, args)]
    server_app.get_event_publisher = get_event_publisher
    llama_cpp.LlamaRAMCache = CompactRAMCache  # what llama_cpp.server builds for --cache true
    app = server_app.create_app(server_settings=server_settings, model_settings=model_settings)

    @app.get("/coderig/stats", include_in_schema=False)
    async def stats() -> dict:
        return STATS.as_dict()

    uvicorn.run(
        app,
        host=server_settings.host,
        port=server_settings.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    sys.exit(main())

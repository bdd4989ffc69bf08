"""A fake OpenAI-compatible server whose timings are known, for the bench honesty tests.

Run as ``python llm_server.py --port 0``; it prints ``PORT <n>`` once listening on 127.0.0.1.
Behaviour is chosen per request by query parameters, so one server serves every test:

``delay``      seconds before the response starts (headers included)
``tokens``     completion tokens to produce (default 5)
``interval``   seconds between streamed tokens
``usage=0``    leave ``usage`` out (forces the client to count chunks)
``stall_every``  every N-th request (server-wide counter) hangs for ``stall`` s (default 3600)
``status``     answer with this HTTP status and an error body
``serial=1``   one request at a time (a single-server queue: latency grows with load)
``text``       the completion to send instead of ``tokens`` times ``"tok "`` (one streamed
               piece per word, whitespace kept)

The editor APIs a typing benchmark speaks are served too: llama.cpp's ``POST /infill`` (SSE of
``{content, stop}``, the last event with ``tokens_cached`` and ``timings``), Ollama's
``POST /api/generate`` (NDJSON) and Tabby's ``POST /v1/completions`` with ``segments`` (one JSON
answer). Cached prompt tokens are faked as a quarter of the characters the prompt shares with
the previous one. While it waits or streams, the server watches the connection: a client that
leaves is counted as ``disconnected`` at once (aiohttp cancels its handler); ``completed``
counts answers written to the end.

``GET /stats`` returns the number of requests seen, the bodies of the last 1000, and
``handled``/``completed``/``disconnected``/``in_flight`` counts. ``/ok`` answers ``ok`` at once:
the trivial endpoint of the load-generator benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections import deque

from aiohttp import web

BODIES: deque = deque(maxlen=1000)
STATE = {"count": 0, "handled": 0, "completed": 0, "disconnected": 0, "in_flight": 0}
LAST_PROMPT = {"text": ""}
SERIAL = asyncio.Lock()


async def sleep_at_least(seconds: float) -> None:
    """Sleep ``seconds`` by the monotonic clock, never less.

    uvloop rounds timers to whole milliseconds, so its ``asyncio.sleep(0.1)`` can end ~0.3-1 ms
    early; the honesty tests assert that nothing arrives before the injected delay, so the
    delay must really be served in full.
    """
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        await asyncio.sleep(left)


def _prompt_text(body: dict) -> str:
    if "messages" in body:
        return "".join(m.get("content", "") for m in body["messages"])
    if isinstance(body.get("segments"), dict):
        seg = body["segments"]
        return str(seg.get("prefix", "")) + str(seg.get("suffix") or "")
    if "input_prefix" in body:
        return str(body["input_prefix"]) + str(body.get("prompt", "")) + body["input_suffix"]
    return str(body.get("prompt", "")) + str(body.get("suffix", ""))


def _prompt_tokens(body: dict) -> int:
    return max(1, len(_prompt_text(body)) // 4)


def _cached_tokens(body: dict) -> int:
    """A fake prefix cache: a quarter of the characters shared with the previous prompt."""
    text, last = _prompt_text(body), LAST_PROMPT["text"]
    LAST_PROMPT["text"] = text
    shared = 0
    for a, b in zip(text, last, strict=False):
        if a != b:
            break
        shared += 1
    return shared // 4


def _pieces(q, tokens: int) -> list[str]:
    if "text" in q:
        return [m.group() for m in re.finditer(r"\s*\S+\s*|\s+", q["text"])]
    return ["tok "] * tokens


async def completions(request: web.Request) -> web.StreamResponse:
    STATE["count"] += 1
    n = STATE["count"]
    q = request.query
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = {}
    BODIES.append(body)
    stall_every = int(q.get("stall_every", 0))
    if stall_every and n % stall_every == 0:
        await asyncio.sleep(float(q.get("stall", 3600)))
    STATE["handled"] += 1
    STATE["in_flight"] += 1
    try:
        if q.get("serial") == "1":
            async with SERIAL:
                response = await _answer(request, body)
        else:
            response = await _answer(request, body)
        STATE["completed"] += 1
        return response
    except (asyncio.CancelledError, ConnectionError):
        # The client left: aiohttp cancels the handler (handler_cancellation below).
        STATE["disconnected"] += 1
        raise
    finally:
        STATE["in_flight"] -= 1


async def _answer(request: web.Request, body: dict) -> web.StreamResponse:
    q = request.query
    delay = float(q.get("delay", 0))
    tokens = int(q.get("tokens", 5))
    interval = float(q.get("interval", 0))
    chat = request.path.endswith("/chat/completions")
    if delay:
        await sleep_at_least(delay)
    if "status" in q:
        return web.json_response({"error": {"message": "injected"}}, status=int(q["status"]))
    if request.path == "/infill":
        return await _infill(request, body, _pieces(q, tokens), interval)
    if request.path == "/api/generate":
        return await _ollama(request, body, _pieces(q, tokens), interval)
    if isinstance(body.get("segments"), dict):
        await sleep_at_least(interval * tokens)
        text = "".join(_pieces(q, tokens))
        return web.json_response({"id": "cmpl-fake", "choices": [{"index": 0, "text": text}]})
    pieces = _pieces(q, tokens)
    tokens = len(pieces)
    usage = {
        "prompt_tokens": _prompt_tokens(body),
        "completion_tokens": tokens,
        "total_tokens": _prompt_tokens(body) + tokens,
        "prompt_tokens_details": {"cached_tokens": _cached_tokens(body)},
    }
    send_usage = q.get("usage", "1") != "0"
    if not body.get("stream"):
        await sleep_at_least(interval * tokens)
        text = "".join(pieces)
        choice = {"index": 0, "finish_reason": "length"}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        out = {"object": "text_completion", "choices": [choice]}
        if send_usage:
            out["usage"] = usage
        return web.json_response(out)

    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)

    async def event(obj: dict | str) -> None:
        data = obj if isinstance(obj, str) else json.dumps(obj)
        await resp.write(f"data: {data}\n\n".encode())

    if chat:  # OpenAI opens a chat stream with a role-only delta: not a token
        await event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    for i, text in enumerate(pieces):
        if i and interval:
            await sleep_at_least(interval)
        piece = {"content": text} if chat else None
        choice = {"index": 0, "delta": piece} if chat else {"index": 0, "text": text}
        await event({"choices": [choice]})
    final = {"index": 0, "finish_reason": "length"}
    final.update({"delta": {}} if chat else {"text": ""})
    await event({"choices": [final]})
    if send_usage and (body.get("stream_options") or {}).get("include_usage"):
        await event({"choices": [], "usage": usage})
    await event("[DONE]")
    await resp.write_eof()
    return resp


async def _infill(request: web.Request, body: dict, pieces: list[str], interval: float):
    """llama.cpp's /infill: SSE events {content, stop}; the last one says what was cached."""
    prompt, cached = _prompt_tokens(body), _cached_tokens(body)
    final = {
        "content": "" if body.get("stream") else "".join(pieces),
        "stop": True,
        "tokens_predicted": len(pieces),
        "tokens_evaluated": prompt,
        "tokens_cached": cached,
        "timings": {"cache_n": cached, "prompt_n": prompt - cached, "predicted_n": len(pieces)},
    }
    if not body.get("stream"):
        await sleep_at_least(interval * len(pieces))
        return web.json_response(final)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for i, text in enumerate(pieces):
        if i and interval:
            await sleep_at_least(interval)
        await resp.write(f"data: {json.dumps({'content': text, 'stop': False})}\n\n".encode())
    await resp.write(f"data: {json.dumps(final)}\n\n".encode())
    await resp.write_eof()
    return resp


async def _ollama(request: web.Request, body: dict, pieces: list[str], interval: float):
    """Ollama's /api/generate: NDJSON lines {response, done}, then the counters."""
    if not body.get("model"):
        return web.json_response({"error": "model is required"}, status=400)
    final = {
        "model": body["model"],
        "response": "",
        "done": True,
        "done_reason": "length",
        "prompt_eval_count": _prompt_tokens(body),
        "eval_count": len(pieces),
    }
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    for i, text in enumerate(pieces):
        if i and interval:
            await sleep_at_least(interval)
        chunk = {"model": body["model"], "response": text, "done": False}
        await resp.write((json.dumps(chunk) + "\n").encode())
    await resp.write((json.dumps(final) + "\n").encode())
    await resp.write_eof()
    return resp


async def ok(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text="ok")


async def stats(request: web.Request) -> web.Response:
    return web.json_response({**STATE, "bodies": list(BODIES)})


async def reset(request: web.Request) -> web.Response:
    for key in STATE:
        STATE[key] = 0
    BODIES.clear()
    LAST_PROMPT["text"] = ""
    return web.json_response({"count": 0})


async def tags(request: web.Request) -> web.Response:
    return web.json_response({"models": [{"name": "fake-coder:latest"}]})


async def models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "fake-coder", "object": "model"}]})


def make_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_post("/infill", completions)
    app.router.add_post("/api/generate", completions)
    app.router.add_get("/api/tags", tags)
    app.router.add_get("/v1/models", models)
    app.router.add_route("*", "/ok", ok)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    return app


async def main(port: int) -> None:
    # handler_cancellation: a client that closes its connection cancels its handler at once,
    # as a real server stops generating for an editor that moved on.
    runner = web.AppRunner(
        make_app(), access_log=None, shutdown_timeout=0.1, handler_cancellation=True
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    actual = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"PORT {actual}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(main(args.port))
    except KeyboardInterrupt:
        sys.exit(0)

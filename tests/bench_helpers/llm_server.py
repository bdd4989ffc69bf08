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

``GET /stats`` returns the number of requests seen and the bodies of the last 1000.
``/ok`` answers ``ok`` at once: the trivial endpoint of the load-generator benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import deque

from aiohttp import web

BODIES: deque = deque(maxlen=1000)
STATE = {"count": 0}
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


def _prompt_tokens(body: dict) -> int:
    if "messages" in body:
        text = "".join(m.get("content", "") for m in body["messages"])
    else:
        text = str(body.get("prompt", "")) + str(body.get("suffix", ""))
    return max(1, len(text) // 4)


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
    if q.get("serial") == "1":
        async with SERIAL:
            return await _answer(request, body)
    return await _answer(request, body)


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
    usage = {
        "prompt_tokens": _prompt_tokens(body),
        "completion_tokens": tokens,
        "total_tokens": _prompt_tokens(body) + tokens,
    }
    send_usage = q.get("usage", "1") != "0"
    if not body.get("stream"):
        await sleep_at_least(interval * tokens)
        text = "tok " * tokens
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
    for i in range(tokens):
        if i and interval:
            await sleep_at_least(interval)
        piece = {"content": "tok "} if chat else None
        choice = {"index": 0, "delta": piece} if chat else {"index": 0, "text": "tok "}
        await event({"choices": [choice]})
    final = {"index": 0, "finish_reason": "length"}
    final.update({"delta": {}} if chat else {"text": ""})
    await event({"choices": [final]})
    if send_usage and (body.get("stream_options") or {}).get("include_usage"):
        await event({"choices": [], "usage": usage})
    await event("[DONE]")
    await resp.write_eof()
    return resp


async def ok(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text="ok")


async def stats(request: web.Request) -> web.Response:
    return web.json_response({"count": STATE["count"], "bodies": list(BODIES)})


async def reset(request: web.Request) -> web.Response:
    STATE["count"] = 0
    BODIES.clear()
    return web.json_response({"count": 0})


def make_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_route("*", "/ok", ok)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    return app


async def main(port: int) -> None:
    runner = web.AppRunner(make_app(), access_log=None, shutdown_timeout=0.1)
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

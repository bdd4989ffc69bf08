"""``coderig bench typing``: a team typing in editors, replayed against a completion server.

Python API::

    from coderig.bench.typing import TypingConfig, run_typing
    header, results = run_typing(TypingConfig(url="http://127.0.0.1:8000", developers=4,
                                              duration=60.0))

The script (:func:`coderig.traffic.typing_team.typing_team`) fixes every keystroke, request
and cancel time before the clock starts. One scheduler task sends each request at its time and
never waits for an answer, so the typing is open loop per developer: a slow server never slows
the keystrokes. Each request streams its answer; at its cancel time — the developer's next
keystroke or cursor move — an unanswered request is cancelled by closing its connection, as
editors do (an aborted ``fetch``, a killed ``curl``), so the server sees the client leave.

Outcomes: **shown** — the whole answer arrived, successfully, before the next keystroke (the
editor can display it); **cancelled** — the next keystroke came first; **error** — an HTTP
error, a broken stream or an ``error`` event, a transport failure, or ``timeout`` with no
keystroke to cancel it. A shown suggestion is **accepted** when its first line equals the line
the developer actually typed next (:func:`coderig.traffic.typing_team.first_line`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from coderig import __version__
from coderig.bench.attack import host_info, run_on_loop, start_iso, wait_until
from coderig.bench.corpus import Corpus
from coderig.bench.editor_apis import EditorApi, Reply, editor_api
from coderig.bench.results import FORMAT_VERSION, Result, result_to_dict
from coderig.bench.streams import json_object, sse_json
from coderig.traffic.typing_team import (
    CompletionRequest,
    TeamScript,
    TypingParams,
    first_line,
    typing_team,
)

_LEAD = 0.05  # between setting the clock and the first send
# The header coderig serve reads a developer's session from (coderig.serve.auth.SESSION_HEADER;
# not imported: bench runs against any server and does not depend on serve).
SESSION_HEADER = "X-Coderig-Session"
_TICK = 0.001  # event-loop timer resolution
OUTCOMES = ("shown", "cancelled", "error")


@dataclass
class TypingConfig:
    """Everything a typing run needs; mirrors the ``coderig bench typing`` options."""

    url: str
    developers: int
    duration: float
    debounce: float | None = None  # None: the model's (300 ms)
    corpus: str | None = None  # None: the Python standard library's source
    max_tokens: int = 64
    api: str = "openai"
    seed: int = 0
    model: str | None = None  # None: asked from the server (openai, ollama)
    prefix_lines: int | None = None
    suffix_lines: int | None = None
    params_file: str | None = None  # a TOML file shaped like traffic/typing_team.toml
    params: TypingParams | None = None  # or the parameters themselves (wins over params_file)
    timeout: float = 30.0
    headers: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    name: str = ""
    loop: str = "auto"

    def typing_params(self) -> TypingParams:
        """The model's parameters with this run's debounce and prompt bounds applied."""
        params = self.params or TypingParams.load(self.params_file)
        changes: dict[str, Any] = {}
        if self.debounce is not None:
            changes["debounce"] = self.debounce
        if self.prefix_lines is not None:
            changes["prefix_lines"] = self.prefix_lines
        if self.suffix_lines is not None:
            changes["suffix_lines"] = self.suffix_lines
        return params.with_(**changes) if changes else params


class TypingResult(Result):
    """One request's timings (see :class:`Result`) and what the editor made of it."""

    __slots__ = (
        "request",
        "cancel_at",
        "outcome",
        "cached_tokens",
        "accepted",
        "expected",
        "suggestion",
    )

    def __init__(self, id: int, request: CompletionRequest):
        super().__init__(id, request.send)
        self.request = request
        self.cancel_at = request.cancel
        self.outcome = ""
        self.cached_tokens: int | None = None
        self.accepted: bool | None = None
        self.expected = request.expected
        self.suggestion: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The results line: the attack's fields, then the typing ones."""
        line = result_to_dict(self)
        req = self.request
        line.update(
            developer=req.developer,
            file=req.path,
            cursor=req.cursor,
            line=req.line,
            column=req.column,
            cancel_at=None if self.cancel_at is None else round(self.cancel_at, 6),
            outcome=self.outcome,
            cached_tokens=self.cached_tokens,
            accepted=self.accepted,
            expected=self.expected,
            suggestion=self.suggestion,
        )
        return line


@dataclass
class TypingPlan:
    """The script and the request bodies, all prepared before the clock starts."""

    script: TeamScript
    api: EditorApi
    url: str
    model: str | None
    bodies: list[bytes]
    corpus: str


def plan_typing(config: TypingConfig, model: str | None = None) -> TypingPlan:
    """The team's script and every request body (``model`` as discovered or given)."""
    if config.max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {config.max_tokens}")
    api = editor_api(config.api)
    corpus = Corpus(config.corpus)
    params = config.typing_params()
    script = typing_team(corpus, config.developers, config.duration, params, config.seed)
    model = model or config.model
    bodies = [
        json.dumps(api.body(r, config.max_tokens, model), ensure_ascii=False).encode()
        for r in script.requests
    ]
    return TypingPlan(script, api, api.url(config.url), model, bodies, corpus.describe())


async def discover_model(config: TypingConfig, session: aiohttp.ClientSession) -> str | None:
    """The served model's name when the API needs one and none was given: Ollama's
    ``/api/tags``, or the first of ``/v1/models`` (vLLM requires it; others ignore it)."""
    if config.model or config.api not in ("openai", "ollama"):
        return config.model
    path = "/api/tags" if config.api == "ollama" else "/v1/models"
    url = EditorApi("discover", path, "json").url(config.url)
    try:
        async with session.get(url, headers=config.headers) as resp:
            data = await resp.json(content_type=None) if resp.status == 200 else {}
    except (aiohttp.ClientError, OSError, ValueError, TimeoutError):
        data = {}
    entries = (data or {}).get("models" if config.api == "ollama" else "data") or []
    key = "name" if config.api == "ollama" else "id"
    names = [e.get(key) for e in entries if isinstance(e, dict) and e.get(key)]
    if names:
        return str(names[0])
    if config.api == "ollama":
        raise ValueError(f"{url}: no model listed; give --model")
    return None


def build_header(config: TypingConfig, plan: TypingPlan, start_wall: float, loop: str) -> dict:
    """The first line of a typing results file: what was run, so the file explains itself."""
    script = plan.script
    params = script.params
    return {
        "kind": "header",
        "format": "coderig-bench-results",
        "version": FORMAT_VERSION,
        "coderig_version": __version__,
        "name": config.name,
        "workload": "typing",
        "start": start_wall,
        "start_iso": start_iso(start_wall),
        "url": plan.url,
        "base_url": config.url,
        "method": "POST",
        "api": plan.api.name,
        "stream": plan.api.stream,
        "developers": config.developers,
        "duration": config.duration,
        "debounce": params.debounce,
        "prefix_lines": params.prefix_lines,
        "suffix_lines": params.suffix_lines,
        "corpus": plan.corpus,
        "max_tokens": config.max_tokens,
        "model": plan.model,
        "seed": config.seed,
        "keystrokes": script.keystrokes,
        "requests": len(script.requests),
        "rate": len(script.requests) / config.duration,
        "arrival": "typing",
        "timeout": config.timeout,
        "typing": params.to_dict(),
        "typists_iki": [round(d.typist_iki, 4) for d in script.developers],
        "headers": sorted(config.headers),
        "tags": dict(config.tags),
        "host": host_info(loop),
    }


class _Replay:
    """State shared by the scheduler and the request tasks of one run (one event loop)."""

    def __init__(self, config: TypingConfig, plan: TypingPlan, session: aiohttp.ClientSession):
        self.config = config
        self.plan = plan
        self.api = plan.api
        self.session = session
        self.headers = {"Content-Type": "application/json", **config.headers}
        # Each developer is one editor on its own machine: tell the server which one sent a
        # request, as a gateway sees by address (coderig: per-developer fairness, routing and
        # supersession). Other servers ignore the header; one given with -H wins.
        given = {name.lower() for name in config.headers}
        self.per_developer = SESSION_HEADER.lower() not in given
        self.results = [TypingResult(i, r) for i, r in enumerate(plan.script.requests)]
        self.header: dict[str, Any] = {}
        self.t0 = 0.0
        self.sent = self.done = self.inflight = 0
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self.completed: list[TypingResult] = []
        self.interrupted = False

    async def run(self, loop_name: str, on_tick: Callable[[Any], None] | None) -> None:
        tasks: set[asyncio.Task] = set()
        loop = asyncio.get_running_loop()
        self.t0 = t0 = time.perf_counter() + _LEAD
        self.header = build_header(self.config, self.plan, time.time() + _LEAD, loop_name)
        ticker = loop.create_task(self._tick(on_tick)) if on_tick else None
        if on_tick:
            on_tick(self)
        try:
            behind = 0
            for r in self.results:
                if r.scheduled <= time.perf_counter() - t0:
                    behind += 1  # catching up: let responses be read every few sends
                    if behind % 8 == 0:
                        await asyncio.sleep(0)
                await wait_until(t0 + r.scheduled)
                task = loop.create_task(self._hit(r))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except asyncio.CancelledError:
            self.interrupted = True  # Ctrl-C: keep what was sent, as the attack does
            for task in list(tasks):
                task.cancel()
            self.results = [r for r in self.results if r.sent is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if ticker:
            ticker.cancel()
        if on_tick:
            on_tick(self)

    async def _tick(self, on_tick: Callable[[Any], None]) -> None:
        while True:
            await asyncio.sleep(0.25)
            on_tick(self)

    def _headers(self, r: TypingResult) -> dict[str, str]:
        if not self.per_developer:
            return self.headers
        return {**self.headers, SESSION_HEADER: f"developer-{r.request.developer}"}

    async def _hit(self, r: TypingResult) -> None:
        perf, t0 = time.perf_counter, self.t0
        body = self.plan.bodies[r.id]
        r.sent = perf() - t0
        r.bytes_out = len(body)
        self.sent += 1
        self.inflight += 1
        # The next keystroke, on the event loop's clock (asyncio.timeout_at's), one timer tick
        # late: loop timers may fire up to a tick early, and a keystroke is never simulated
        # early (an answer that lands in that tick is judged against cancel_at below). "Now"
        # is time.monotonic(), the clock both loops run on, not loop.time(): uvloop's is the
        # time its current iteration began, stale by as long as a busy iteration lasts, and a
        # deadline counted from it fired that much before the keystroke.
        deadline = None
        if r.cancel_at is not None:
            deadline = time.monotonic() + (t0 + r.cancel_at - perf()) + _TICK
        reply = Reply.empty()
        resp: aiohttp.ClientResponse | None = None
        complete = False
        scope = asyncio.timeout_at(deadline)
        try:
            async with scope:
                resp = await self.session.post(self.plan.url, data=body, headers=self._headers(r))
                r.first_byte = perf() - t0
                r.status = resp.status
                await self._read(resp, r, reply)
                complete = True
                if resp.status >= 400:
                    r.error = f"{resp.status} {resp.reason or ''}".rstrip()
            r.end = perf() - t0
        except TimeoutError:
            r.end = perf() - t0
            if scope.expired():
                r.outcome = "cancelled"
            else:
                r.error = f'Post "{self.plan.url}": timeout ({self.config.timeout:g}s exceeded)'
        except asyncio.CancelledError:
            r.end = perf() - t0
            r.error = f'Post "{self.plan.url}": interrupted (run stopped)'
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            r.end = perf() - t0
            r.error = f'Post "{self.plan.url}": {exc or type(exc).__name__}'
        finally:
            if resp is not None:
                # Closing an unfinished response closes its connection: the server sees the
                # editor leave. A finished one goes back to the pool (keep-alive).
                if complete:
                    resp.release()
                else:
                    resp.close()
            self._settle(r, reply, complete)

    async def _read(self, resp: aiohttp.ClientResponse, r: TypingResult, reply: Reply) -> None:
        perf, t0, api = time.perf_counter, self.t0, self.api
        if api.framing == "json" or resp.status >= 400:
            data = await resp.read()
            r.bytes_in = len(data)
            obj = json_object(data)
            if obj is not None:
                api.take(obj, reply, perf() - t0)
            return
        parse = sse_json if api.framing == "sse" else json_object
        async for line in resp.content:
            r.bytes_in += len(line)
            obj = parse(line)
            if obj is not None:
                api.take(obj, reply, perf() - t0)

    def _settle(self, r: TypingResult, reply: Reply, complete: bool) -> None:
        r.token_times = reply.token_times
        r.first_token = reply.token_times[0] if reply.token_times else None
        r.prompt_tokens = reply.prompt_tokens
        r.cached_tokens = reply.cached_tokens
        if reply.completion_tokens is not None:
            r.completion_tokens, r.tokens_from = reply.completion_tokens, "usage"
        elif self.api.stream:
            r.completion_tokens, r.tokens_from = len(reply.token_times), "chunks"
        if complete and reply.error and not r.error:
            r.error = reply.error  # an error event in a 2xx stream
        late = complete and r.cancel_at is not None and r.end is not None and r.end > r.cancel_at
        if r.outcome == "cancelled" or (late and not r.error):
            # The next keystroke came first: the editor drops the answer. A connection still
            # open then was closed; the exchange did not complete (first_byte tells if headers
            # had come).
            r.outcome = "cancelled"
            if not complete:
                r.status = 0
        elif complete and not r.error:
            r.outcome = "shown"
            r.suggestion = first_line("".join(reply.text))
            r.accepted = (r.suggestion == r.expected) if r.expected else None
        else:
            r.outcome = "error"
            if not complete:
                r.status = 0
        self.counts[r.outcome] += 1
        self.inflight -= 1
        self.done += 1
        self.completed.append(r)


async def typing_run(
    config: TypingConfig,
    on_tick: Callable[[Any], None] | None = None,
    plan: TypingPlan | None = None,
) -> tuple[dict, list[dict]]:
    """Run the team on the current event loop; returns (header, result dicts in send order).

    ``on_tick(state)`` is called at the start (``state.header`` is set), every 250 ms and at
    the end; ``state`` has ``sent``, ``done``, ``inflight``, ``counts`` (per outcome), the
    planned ``results`` and the finished ones in ``completed``.
    """
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=config.timeout)
    loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if plan is None:
            plan = plan_typing(config, await discover_model(config, session))
        replay = _Replay(config, plan, session)
        await replay.run(loop_name, on_tick)
    if replay.interrupted:
        replay.header["interrupted"] = True
    return replay.header, [r.to_dict() for r in replay.results]


def run_typing(
    config: TypingConfig, on_tick: Callable[[Any], None] | None = None
) -> tuple[dict, list[dict]]:
    """Synchronous :func:`typing_run` on a fresh event loop (uvloop when installed)."""
    return run_on_loop(lambda: typing_run(config, on_tick), config.loop)

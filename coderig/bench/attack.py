"""The open-loop attack: fire requests at pre-computed times and time every phase of each one.

Python API (what ``coderig bench attack`` runs)::

    from coderig.bench.attack import AttackConfig, run_attack
    header, results = run_attack(AttackConfig(url=..., rate=32, duration=5.0))

``run_attack`` is the sync wrapper around ``async attack(config)``; both return the results
header (a dict) and one dict per scheduled request, in the format of docs/results-format.md,
ready for :meth:`coderig.bench.metrics.Metrics.of` or :func:`coderig.bench.results.write_results`.

How it stays honest: a single scheduler task sleeps until each send time and spawns the request
as its own task — it never awaits a response, so a slow server cannot delay the next send.
When ``max_inflight`` is reached, a due request is *not sent* and recorded as such, instead of
being delayed (delaying would turn the test into a closed loop). Every result keeps its
scheduled and actual send time, so any lag of the generator itself is visible in the report.
Timestamps come from ``time.perf_counter`` (ns resolution, monotonic), as offsets from the start.
"""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

from coderig import __version__
from coderig.bench.results import FORMAT_VERSION, Result, result_to_dict
from coderig.bench.streams import error_text, json_object, openai_text, sse_json
from coderig.bench.workload import WorkloadSpec, fixed_body, generated_bodies
from coderig.traffic.arrivals import send_times

T = TypeVar("T")

NOT_SENT_ERROR = "not sent: max-inflight {} reached"
_TICK = 0.001  # event-loop timer resolution
_LEAD = 0.05  # time between setting the clock and the first scheduled send


@dataclass
class AttackConfig:
    """Everything an attack needs; mirrors the ``coderig bench attack`` options."""

    url: str
    rate: float
    duration: float | None = None
    requests: int | None = None
    arrival: str = "constant"
    seed: int = 0
    timeout: float = 30.0
    max_inflight: int | None = None
    stream: bool | None = None
    headers: dict[str, str] = field(default_factory=dict)
    workload: WorkloadSpec = field(default_factory=WorkloadSpec)
    tags: dict[str, str] = field(default_factory=dict)
    name: str = ""
    progress: bool = False
    loop: str = "auto"  # "uvloop", "asyncio", or "auto" (uvloop when installed)


@dataclass
class _Plan:
    """What the scheduler needs, all computed before the clock starts."""

    times: list[float]
    bodies: list[bytes]
    stream: bool


def plan_attack(config: AttackConfig) -> _Plan:
    """Send times and request bodies, prepared up front so sending costs as little as possible."""
    times = send_times(config.rate, config.duration, config.requests, config.arrival, config.seed)
    spec = config.workload
    if spec.bodies:
        prepared = [fixed_body(raw, config.stream, spec.include_usage) for raw in spec.bodies]
        stream = prepared[0][1]
        bodies = [prepared[i % len(prepared)][0] for i in range(len(times))]
    elif spec.body is not None:
        body, stream = fixed_body(spec.body, config.stream, spec.include_usage)
        bodies = [body] * len(times)
    elif spec.prompt_tokens is not None:
        stream = bool(config.stream)
        spec.stream = stream
        bodies = generated_bodies(spec, len(times))
    else:
        # No body at all: an empty JSON object, enough to load-test a trivial endpoint.
        body, stream = fixed_body(b"{}", config.stream, spec.include_usage)
        bodies = [body] * len(times)
    return _Plan(times, bodies, stream)


def build_header(config: AttackConfig, plan: _Plan, start_wall: float, loop_name: str) -> dict:
    """The first line of a results file: the attack's parameters, so a file explains itself."""
    header: dict[str, Any] = {
        "kind": "header",
        "format": "coderig-bench-results",
        "version": FORMAT_VERSION,
        "coderig_version": __version__,
        "name": config.name,
        "start": start_wall,
        "start_iso": start_iso(start_wall),
        "url": config.url,
        "method": "POST",
        "rate": config.rate,
        "duration": config.duration,
        "requests": len(plan.times),
        "requests_limit": config.requests,
        "arrival": config.arrival,
        "seed": config.seed,
        "timeout": config.timeout,
        "max_inflight": config.max_inflight,
        "stream": plan.stream,
        "headers": sorted(config.headers),
        "tags": dict(config.tags),
        "host": host_info(loop_name),
    }
    header.update(config.workload.describe())
    return header


async def wait_until(due: float) -> None:
    """Sleep until ``time.perf_counter()`` reaches ``due``, never waking early.

    Event-loop timers tick in milliseconds (uvloop rounds, epoll rounds up), so a wake-up can
    come early: loop until due, but never ask for less than one tick — polling the loop for
    sub-millisecond remainders would burn a core that the server under test may need. Cost:
    sends are up to ~1 ms late (never early), which results record as scheduling lag.
    """
    perf = time.perf_counter
    while (delay := due - perf()) > 0:
        await asyncio.sleep(max(delay, _TICK))


def host_info(loop_name: str) -> dict[str, Any]:
    """The load generator's machine, for the results header."""
    return {
        "hostname": socket.gethostname(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "event_loop": loop_name,
    }


def start_iso(start_wall: float) -> str:
    """A Unix time as ISO-8601 UTC with microseconds, as results headers carry it."""
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start_wall))
        + f".{int(start_wall % 1 * 1e6):06d}Z"
    )


class _Attacker:
    """State shared by the scheduler and request tasks of one attack (one event loop)."""

    def __init__(
        self, config: AttackConfig, plan: _Plan, session: aiohttp.ClientSession, loop_name: str
    ):
        self.config = config
        self.loop_name = loop_name
        self.header: dict[str, Any] = {}
        self.plan = plan
        self.session = session
        self.url = config.url
        self.headers = {"Content-Type": "application/json", **config.headers}
        self.results = [Result(i, t) for i, t in enumerate(plan.times)]
        self.inflight = 0
        self.sent = 0
        self.done = 0
        self.not_sent = 0
        # Finished results in completion order, for writers that stream them during the attack.
        self.completed: list[Result] = []
        self.t0 = 0.0
        self.start_wall = 0.0
        self.interrupted = False
        self.read = self._read_stream if plan.stream else self._read_body

    async def run(self, on_tick: Callable[[_Attacker], None] | None = None) -> None:
        tasks: set[asyncio.Task] = set()
        loop = asyncio.get_running_loop()
        limit = self.config.max_inflight
        ticker = loop.create_task(self._tick(on_tick)) if on_tick else None
        perf = time.perf_counter
        # The clock starts a little in the future, so the first send is not late by the cost
        # of the first progress refresh / header write made just below.
        self.t0 = t0 = perf() + _LEAD
        self.start_wall = time.time() + _LEAD
        self.header = build_header(self.config, self.plan, self.start_wall, self.loop_name)
        if on_tick:
            on_tick(self)
        try:
            await self._schedule(tasks, loop, limit, t0)
        except asyncio.CancelledError:
            # Ctrl-C (asyncio.Runner cancels the main task): stop sending, end in-flight
            # requests as "interrupted", and keep every result up to now, as vegeta does.
            self.interrupted = True
            for task in list(tasks):
                task.cancel()
            self.results = [r for r in self.results if r.sent is not None or r.not_sent]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if ticker:
            ticker.cancel()
            on_tick(self)

    async def _schedule(
        self,
        tasks: set[asyncio.Task],
        loop: asyncio.AbstractEventLoop,
        limit: int | None,
        t0: float,
    ) -> None:
        perf = time.perf_counter
        behind = 0
        for r in self.results:
            if r.scheduled <= perf() - t0:
                # Already due: the sender is behind. Catch up, but let responses be read every
                # few sends — spawning a whole backlog at once opens a connection per request
                # and turns a small delay into a collapse.
                behind += 1
                if behind % 8 == 0:
                    await asyncio.sleep(0)
            await wait_until(t0 + r.scheduled)
            if limit is not None and self.inflight >= limit:
                r.error = NOT_SENT_ERROR.format(limit)
                r.not_sent = True
                self.not_sent += 1
                self.completed.append(r)
                continue
            self.inflight += 1
            task = loop.create_task(self._hit(r))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def _tick(self, on_tick: Callable[[_Attacker], None]) -> None:
        while True:
            await asyncio.sleep(0.25)
            on_tick(self)

    async def _hit(self, r: Result) -> None:
        perf = time.perf_counter
        t0 = self.t0
        body = self.plan.bodies[r.id]
        r.sent = perf() - t0
        self.sent += 1
        r.bytes_out = len(body)
        phase = "awaiting headers"
        try:
            async with self.session.post(self.url, data=body, headers=self.headers) as resp:
                r.first_byte = perf() - t0
                phase = "reading body"
                await self.read(resp, r)
                r.end = perf() - t0
                r.status = resp.status
                if r.status < 200 or r.status >= 400:
                    r.error = f"{resp.status} {resp.reason or ''}".rstrip()
        except asyncio.CancelledError:
            r.end = perf() - t0
            r.status = 0
            r.error = f'Post "{self.url}": interrupted (attack stopped while {phase})'
        except TimeoutError:
            r.end = perf() - t0
            r.status = 0
            r.error = f'Post "{self.url}": timeout ({self.config.timeout:g}s exceeded {phase})'
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            r.end = perf() - t0
            r.status = 0
            detail = str(exc) or type(exc).__name__
            r.error = f'Post "{self.url}": {detail}'
        finally:
            self.inflight -= 1
            self.done += 1
            self.completed.append(r)

    async def _read_body(self, resp: aiohttp.ClientResponse, r: Result) -> None:
        data = await resp.read()
        r.bytes_in = len(data)
        if data[:1] == b"{":
            obj = json_object(data)
            if obj is not None:
                _take_usage(r, obj.get("usage"))
                if "error" in obj and resp.status < 400:
                    r.error = error_text(obj["error"])

    async def _read_stream(self, resp: aiohttp.ClientResponse, r: Result) -> None:
        """Parse server-sent events; a token is a chunk whose text or delta content is non-empty."""
        perf = time.perf_counter
        t0 = self.t0
        times = r.token_times
        nbytes = 0
        usage = None
        async for line in resp.content:
            nbytes += len(line)
            obj = sse_json(line)
            if obj is None:
                continue
            if openai_text(obj):
                times.append(perf() - t0)
            if obj.get("usage"):
                usage = obj["usage"]
            if "error" in obj:
                r.error = error_text(obj["error"])
        r.bytes_in = nbytes
        if times:
            r.first_token = times[0]
        if not _take_usage(r, usage) and resp.status < 400:
            r.completion_tokens = len(times)
            r.tokens_from = "chunks"


def _take_usage(r: Result, usage: Any) -> bool:
    if not isinstance(usage, dict):
        return False
    r.prompt_tokens = usage.get("prompt_tokens")
    r.completion_tokens = usage.get("completion_tokens")
    r.tokens_from = "usage"
    return True


def _uvloop_available() -> bool:
    """uvloop is optional: it trims a few % of per-request CPU; plain asyncio works as well."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


async def attack(
    config: AttackConfig,
    on_tick: Callable[[Any], None] | None = None,
    plan: _Plan | None = None,
) -> tuple[dict, list[dict]]:
    """Run one attack on the current event loop; returns (header, result dicts).

    ``on_tick(state)`` is called once at the start (``state.header`` is then set), about every
    250 ms during the attack, and once at the end. ``state`` has counters ``sent``, ``done``,
    ``not_sent``, ``inflight``, the planned ``results`` and the finished ones in ``completed``
    (completion order) — for progress bars and live writers, never for attack logic.
    """
    plan = plan or plan_attack(config)
    limit = config.max_inflight or 0
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=config.timeout)
    loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=True, skip_auto_headers=()
    ) as session:
        attacker = _Attacker(config, plan, session, loop_name)
        await attacker.run(on_tick)
    if attacker.interrupted:
        attacker.header["interrupted"] = True
        attacker.header["requests_sent_or_skipped"] = len(attacker.results)
    return attacker.header, [result_to_dict(r) for r in attacker.results]


def run_attack(
    config: AttackConfig, on_tick: Callable[[Any], None] | None = None
) -> tuple[dict, list[dict]]:
    """Synchronous :func:`attack` on a fresh event loop (uvloop when installed, see ``loop``)."""
    plan = plan_attack(config)
    return run_on_loop(lambda: attack(config, on_tick, plan), config.loop)


def run_on_loop(main: Callable[[], Coroutine[Any, Any, T]], loop: str = "auto") -> T:
    """Run ``main()`` on a fresh event loop: uvloop (``"uvloop"``, or ``"auto"`` when it is
    installed) or asyncio's own."""
    if loop not in ("auto", "uvloop", "asyncio"):
        raise ValueError(f"loop must be auto, uvloop or asyncio, got {loop!r}")
    if loop == "uvloop" or (loop == "auto" and _uvloop_available()):
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())

"""Supervised engine replicas: :class:`ReplicaPool` starts them, health-checks them, restarts
them, and lends their slots to requests (:meth:`ReplicaPool.lease`), failing the requests of a
replica that died with :class:`ReplicaLost` instead of letting them hang; :class:`Replica` is one
engine process and the gateway-side queue in front of it. See docs/architecture.md, section 5.8
(replica supervision) and section 3 (when things go wrong).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from enum import StrEnum
from pathlib import Path

import httpx

from coderig.engines.base import (
    UPSTREAM_KEY_ENV,
    Engine,
    Launch,
    bearer_headers,
    new_replica_secret,
    replica_environment,
)
from coderig.serve.fair import FairSlots

log = logging.getLogger("coderig.serve")

_PR_SET_PDEATHSIG = 1


class ReplicaState(StrEnum):
    STARTING = "starting"
    READY = "ready"
    UNHEALTHY = "unhealthy"
    RESTARTING = "restarting"
    STOPPED = "stopped"


class NoReplicaAvailable(Exception):
    """No replica is ready to take a request (all starting, restarting or dead)."""


class ReplicaLost(Exception):
    """The replica serving (or about to serve) a request died or was killed."""


class Abandoned(Exception):
    """The request gave up its place in the queue or its slot before it was done: a newer
    request from the same developer replaced it (:mod:`coderig.serve.supersede`)."""


class ReplicaStartError(Exception):
    """A replica could not start at all; the message carries the end of its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


class Replica:
    """One engine process and the gateway-side queue in front of it."""

    def __init__(self, index: int, engine: Engine, log_dir: Path, url: str | None = None) -> None:
        self.index = index
        self.name = f"replica-{index}"
        self.engine = engine
        self.log_path = log_dir / f"{self.name}.log"
        self.external_url = url
        self.url = url or ""
        self.pid: int | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.state = ReplicaState.STARTING
        # Free slots; waiting requests are served round-robin across developers.
        self.capacity = FairSlots(engine.slots)
        # Per slot: free or not, and when it was last leased (monotonic seconds).
        self.slot_free = [True] * engine.slots
        self.slot_used_at = [0.0] * engine.slots
        self.queued = 0
        self.active = 0
        self.restarts = 0
        self.last_exit: str | None = None
        self.lost = asyncio.Event()
        self.ready_since: float | None = None
        # Seconds each recent request held a slot: the admission controller's service-time estimate.
        self.service_times: deque[float] = deque(maxlen=64)
        # When each running request got its slot (monotonic seconds).
        self.running_since: list[float] = []

    @property
    def in_flight(self) -> int:
        return self.queued + self.active

    def record_service_time(self, seconds: float) -> None:
        """A request that ran to completion held a slot this long (feeds the wait estimate)."""
        self.service_times.append(seconds)

    def typical_service_time(self) -> float | None:
        """Median slot time of recent completed requests; None until there are some."""
        if not self.service_times:
            return None
        ordered = sorted(self.service_times)
        return ordered[len(ordered) // 2]

    def estimated_wait(self, flow: str | None = None) -> float:
        """Seconds a request arriving now would wait for a slot on this replica.

        Zero while a slot is free. Otherwise: until the running request that started first is
        expected to finish (the typical service time minus how long it has run; never quite
        zero, as it may overrun), then a typical service time per ``slots`` for each request
        ahead of it: all those queued, or with fair queuing for ``flow`` only those its turn
        comes after (a developer behind someone else's burst waits one turn per flow, not the
        whole burst). A flow held at its share of the slots (``FairSlots.share``) waits for its
        own requests ahead of it, a share at a time.
        """
        slots = self.engine.slots
        capacity = self.capacity
        share = capacity.share_of()
        if flow is not None and capacity.share and capacity.running(flow) >= share:
            # Held at its share of the slots: it waits for its own requests, a share at a time.
            service = self.typical_service_time() or 0.0
            return (capacity.waiting_in(flow) + 1) * service / share
        if self.active < slots:
            return 0.0
        service = self.typical_service_time()
        if service is None:
            return 0.0
        now = time.monotonic()
        oldest = min(self.running_since, default=now)
        first_free = max(0.1 * service, service - (now - oldest))
        ahead = self.queued if flow is None else self.capacity.ahead_of(flow)
        return first_free + ahead * service / slots

    def snapshot(self) -> dict:
        return {
            "name": self.name,
            "state": str(self.state),
            "url": self.url,
            "pid": self.pid,
            "active": self.active,
            "queued": self.queued,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
        }

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


StateListener = Callable[[Replica], None]


class ReplicaPool:
    """All replicas of one model, supervised."""

    #: Engine replicas running behind the pool where something else runs them (Ray Serve
    #: scales them, to zero too); None where the pool's replicas are the engines themselves.
    running_replicas: int | None = None

    def __init__(
        self,
        engine: Engine,
        replicas: int,
        *,
        log_dir: Path,
        external_urls: list[str] | None = None,
        startup_timeout: float = 300.0,
        health_interval: float = 2.0,
        health_timeout: float = 5.0,
        health_failures: int = 3,
        max_backoff: float = 30.0,
    ) -> None:
        self.engine = engine
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        urls = external_urls or [None] * replicas
        self.replicas = [Replica(i, engine, log_dir, url) for i, url in enumerate(urls)]
        self.startup_timeout = startup_timeout
        self.health_interval = health_interval
        self.health_timeout = health_timeout
        self.health_failures = health_failures
        self.max_backoff = max_backoff
        self.listeners: list[StateListener] = []
        self._stopping = False
        self._tasks: list[asyncio.Task] = []
        self._first_ready: dict[int, asyncio.Future] = {}
        # Replicas the pool starts require a fresh secret that only the gateway holds, so no
        # other process on the host reaches an engine around keys, limits and admission.
        # Upstreams it does not start get the operator's key, if any.
        self.secret = (
            new_replica_secret()
            if engine.secret_env is not None
            else os.environ.get(UPSTREAM_KEY_ENV) or None
        )
        self.upstream_headers = bearer_headers(self.secret)
        self._health_client = httpx.AsyncClient(
            timeout=health_timeout, headers=self.upstream_headers
        )
        self._scaled_to_zero = False
        self._background: set[asyncio.Task] = set()  # slots waiting for the engine to go idle

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start every replica and return once all are ready; raise if one cannot start."""
        loop = asyncio.get_running_loop()
        for replica in self.replicas:
            self._first_ready[replica.index] = loop.create_future()
            self._tasks.append(asyncio.create_task(self._supervise(replica), name=replica.name))
        try:
            await asyncio.wait_for(
                asyncio.gather(*self._first_ready.values()), timeout=self.startup_timeout
            )
        except TimeoutError as exc:
            slow = [r.name for r in self.replicas if r.state != ReplicaState.READY]
            raise ReplicaStartError(
                f"{', '.join(slow)} not healthy after {self.startup_timeout:.0f}s; "
                f"see logs in {self.log_dir}"
            ) from exc
        self._tasks.append(asyncio.create_task(self._health_loop(), name="health"))

    async def stop(self) -> None:
        """Terminate replicas (SIGTERM, then SIGKILL after 5 s) and stop supervising."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await asyncio.gather(*(self._terminate(r) for r in self.replicas))
        await self._health_client.aclose()

    async def _terminate(self, replica: Replica) -> None:
        process = replica.process
        replica.state = ReplicaState.STOPPED
        replica.lost.set()
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    def _set_state(self, replica: Replica, state: ReplicaState) -> None:
        replica.state = state
        replica.ready_since = time.monotonic() if state == ReplicaState.READY else None
        for listener in self.listeners:
            listener(replica)

    # --- supervision -----------------------------------------------------------------

    async def _supervise(self, replica: Replica) -> None:
        first = self._first_ready[replica.index]
        try:
            await self._supervise_forever(replica, first)
        except Exception as exc:  # a bug must fail the start, not leave it waiting forever
            log.exception("%s: supervisor failed", replica.name)
            if not first.done():
                first.set_exception(ReplicaStartError(f"{replica.name}: cannot start: {exc!r}"))

    async def _supervise_forever(self, replica: Replica, first: asyncio.Future) -> None:
        backoff = 1.0
        while not self._stopping:
            if replica.external_url:
                await self._watch_external(replica, first)
                return
            try:
                await self._spawn(replica)
            except OSError as exc:
                if not first.done():
                    first.set_exception(ReplicaStartError(f"{replica.name}: cannot start: {exc}"))
                    return
                await asyncio.sleep(backoff)
                continue
            healthy = await self._wait_healthy(replica)
            if healthy:
                self._set_state(replica, ReplicaState.READY)
                log.info("%s ready on %s (pid %s)", replica.name, replica.url, replica.pid)
                if not first.done():
                    first.set_result(True)
            assert replica.process is not None
            returncode = await replica.process.wait()
            replica.lost.set()
            replica.last_exit = describe_exit(returncode)
            if self._stopping:
                return
            if not first.done():
                hint = ""
                if returncode in (-signal.SIGILL, -signal.SIGSEGV):
                    from coderig.engines.llamacpp import REBUILD_HINT

                    hint = f"\nIf this is llama.cpp, {REBUILD_HINT}"
                first.set_exception(
                    ReplicaStartError(
                        f"{replica.name} {replica.last_exit} before it was ready. "
                        f"Last lines of {replica.log_path}:\n{replica.log_tail()}{hint}"
                    )
                )
                return
            uptime = time.monotonic() - (replica.ready_since or time.monotonic())
            if uptime > 60:
                backoff = 1.0
            log.warning("%s %s; restarting in %.0fs", replica.name, replica.last_exit, backoff)
            self._set_state(replica, ReplicaState.RESTARTING)
            replica.restarts += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    async def _spawn(self, replica: Replica) -> None:
        port = free_port()
        launch: Launch | None = replica.engine.launch(index=replica.index, port=port)
        assert launch is not None
        replica.lost = asyncio.Event()
        replica.url = f"http://127.0.0.1:{port}"
        self._set_state(replica, ReplicaState.STARTING)
        with open(replica.log_path, "ab") as log_file:
            replica.process = await asyncio.create_subprocess_exec(
                *launch.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                env=replica_environment(replica.engine, launch, self.secret),
                preexec_fn=_die_with_parent,
                start_new_session=True,
            )
        replica.pid = replica.process.pid

    async def _wait_healthy(self, replica: Replica) -> bool:
        """Poll the health route until it answers 200, or the process exits."""
        assert replica.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if replica.process.returncode is not None:
                return False
            if await self._probe(replica):
                return True
            await asyncio.sleep(0.2)
        log.error("%s not healthy after %.0fs; killing it", replica.name, self.startup_timeout)
        with contextlib.suppress(ProcessLookupError):
            replica.process.kill()
        return False

    async def _probe(self, replica: Replica) -> bool:
        try:
            response = await self._health_client.get(replica.url + replica.engine.health_path)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def _health_loop(self) -> None:
        """Kill replicas that stop answering, so the supervisor restarts them."""
        failures = {r.index: 0 for r in self.replicas}
        while not self._stopping:
            await asyncio.sleep(self.health_interval)
            checks = [
                r for r in self.replicas if r.state in (ReplicaState.READY, ReplicaState.UNHEALTHY)
            ]
            results = await asyncio.gather(*(self._probe(r) for r in checks))
            for replica, ok in zip(checks, results, strict=True):
                if ok:
                    failures[replica.index] = 0
                    if replica.state == ReplicaState.UNHEALTHY:
                        self._set_state(replica, ReplicaState.READY)
                    continue
                failures[replica.index] += 1
                if replica.state == ReplicaState.READY:
                    self._set_state(replica, ReplicaState.UNHEALTHY)
                if failures[replica.index] >= self.health_failures:
                    failures[replica.index] = 0
                    self._on_unresponsive(replica)

    def _on_unresponsive(self, replica: Replica) -> None:
        if replica.process is not None and replica.process.returncode is None:
            log.warning(
                "%s failed %d health checks; killing it for a restart",
                replica.name,
                self.health_failures,
            )
            replica.lost.set()
            with contextlib.suppress(ProcessLookupError):
                replica.process.kill()
        elif replica.external_url:
            replica.lost.set()

    async def _watch_external(self, replica: Replica, first: asyncio.Future) -> None:
        """An upstream we did not start: we can only wait for it to answer."""
        while not self._stopping:
            if await self._probe(replica):
                # The health loop may already have marked it READY again; a set ``lost`` left
                # from the outage would still fail every lease, so renew it either way.
                if replica.state != ReplicaState.READY or replica.lost.is_set():
                    replica.lost = asyncio.Event()
                    self._set_state(replica, ReplicaState.READY)
                if not first.done():
                    first.set_result(True)
            await asyncio.sleep(self.health_interval)

    # --- lending ---------------------------------------------------------------------

    def ready(self) -> list[Replica]:
        return [r for r in self.replicas if r.state == ReplicaState.READY]

    @contextlib.asynccontextmanager
    async def lease(
        self,
        replica: Replica,
        prefer: int | None = None,
        flow: str = "",
        pinned: bool = True,
        abandon: asyncio.Event | None = None,
        hold: float = 0.0,
    ) -> AsyncIterator[int]:
        """Hold one of ``replica``'s slots and yield its number: ``prefer`` when it is free,
        else the free one used longest ago. While all are busy, waiting requests get slots
        round-robin across ``flow`` (developer). ``pinned``: the request runs in exactly that
        slot of the engine (``id_slot``); else the engine picks one. ``hold``: wait up to that
        long for the replica to run nothing (:meth:`FairSlots.acquire`). Raises
        :class:`ReplicaLost` if it dies meanwhile, :class:`Abandoned` if ``abandon`` is set
        while it waits; the holder raises :class:`Abandoned` to leave a slot early."""
        lost = replica.lost
        replica.queued += 1
        try:
            await _acquire_unless(replica.capacity, lost, flow, abandon, hold)
        finally:
            replica.queued -= 1
        # The semaphore counts free slots, so one is free now.
        free = [i for i, is_free in enumerate(replica.slot_free) if is_free]
        slot = prefer if prefer in free else min(free, key=lambda i: replica.slot_used_at[i])
        replica.slot_free[slot] = False
        replica.active += 1
        started = time.monotonic()
        replica.slot_used_at[slot] = started
        replica.running_since.append(started)
        left_early = False
        try:
            yield slot
        except (GeneratorExit, asyncio.CancelledError, Abandoned):
            left_early = True
            raise
        finally:
            replica.active -= 1
            replica.running_since.remove(started)
            if left_early and replica.engine.slot_routing and not replica.lost.is_set():
                # The client left, but llama-server finishes a prefill it started: the slot is
                # busy for up to a prefill more. Lending it now would send the engine more
                # requests than it has idle slots, and the extra one would wait inside it.
                task = asyncio.create_task(self._free_when_idle(replica, slot, pinned, flow))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            else:
                self._free_slot(replica, slot, flow)

    def _free_slot(self, replica: Replica, slot: int, flow: str) -> None:
        replica.slot_free[slot] = True
        replica.capacity.release(flow)

    async def _free_when_idle(
        self,
        replica: Replica,
        slot: int,
        pinned: bool,
        flow: str,
        poll: float = 0.05,
        limit: float = 60.0,
    ) -> None:
        """Give the slot back once the engine says it stopped processing (``GET /slots``): that
        slot when requests are pinned to slots, else as soon as the engine runs no more
        requests than the gateway has running there."""
        deadline = time.monotonic() + limit
        try:
            while time.monotonic() < deadline and not replica.lost.is_set():
                try:
                    response = await self._health_client.get(f"{replica.url}/slots")
                    states = {s.get("id"): s.get("is_processing") for s in response.json()}
                except (httpx.HTTPError, ValueError, AttributeError, TypeError):
                    return  # no slot states to wait for: free it now
                busy = (
                    states.get(slot) if pinned else sum(map(bool, states.values())) > replica.active
                )
                if not busy:
                    return
                await asyncio.sleep(poll)
        finally:
            self._free_slot(replica, slot, flow)

    # --- fleet: scale to zero (coderig.serve.idle) ------------------------------------------

    @property
    def scaled_to_zero(self) -> bool:
        return self._scaled_to_zero

    async def scale_to_zero(self) -> None:
        """Stop every replica process but keep the pool usable: :meth:`scale_up` restarts them."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await asyncio.gather(*(self._terminate(r) for r in self.replicas))
        self._scaled_to_zero = True
        for replica in self.replicas:
            self._set_state(replica, ReplicaState.STOPPED)

    async def scale_up(self) -> None:
        """Start the replicas again after :meth:`scale_to_zero`; returns once all are ready."""
        self._scaled_to_zero = False
        await self.start()


async def _acquire_unless(
    semaphore: FairSlots,
    lost: asyncio.Event,
    flow: str,
    abandon: asyncio.Event | None,
    hold: float = 0.0,
) -> None:
    """Acquire a slot, unless the replica is lost or the request is abandoned first."""
    if lost.is_set():
        raise ReplicaLost("replica is down")
    if abandon is not None and abandon.is_set():
        raise Abandoned("the request was abandoned before it was queued")
    if not semaphore.locked(flow, hold):
        await semaphore.acquire(flow, hold)
        return
    acquire = asyncio.ensure_future(semaphore.acquire(flow, hold))
    stops = [asyncio.ensure_future(lost.wait())]
    if abandon is not None:
        stops.append(asyncio.ensure_future(abandon.wait()))
    try:
        await asyncio.wait({acquire, *stops}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        for stop in stops:
            stop.cancel()
        if acquire.done() and not acquire.cancelled():
            semaphore.release(flow)
        acquire.cancel()
        raise
    for stop in stops:
        stop.cancel()
    stopped = lost.is_set() or (abandon is not None and abandon.is_set())
    if acquire.done() and not acquire.cancelled():
        if not stopped:
            return
        semaphore.release(flow)
    else:
        acquire.cancel()
    if lost.is_set():
        raise ReplicaLost("replica went down while the request was queued")
    raise Abandoned("the request was abandoned while it was queued")

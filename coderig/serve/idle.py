"""Scale to zero: stop the replicas after a quiet period, start them on the next request.

``--idle-shutdown 15m`` stops every replica process once no request has been in flight for
15 minutes; the gateway itself stays up. The next request waits while the replicas start (a
*cold start*: bounded by ``--startup-timeout``, a 503 if they cannot start), is counted in
``coderig_cold_starts_total`` / ``coderig_cold_start_seconds`` and logged with its duration.

``--schedule "mon-fri 08:00-19:00"`` keeps the replicas up inside its windows (never stopped
for idleness) and starts them when a window opens, so the first request of the morning is warm;
outside the windows the idle shutdown applies (15 minutes unless ``--idle-shutdown`` says
otherwise). It is the same syntax ``coderig plan --schedule`` prices.

``/ready`` stays 200 while scaled to zero, with ``"state": "scaled_to_zero"``: a load balancer
that took the gateway out of rotation would never send the request that wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum

from coderig.on_hours import Schedule
from coderig.serve.errors import OpenAIError
from coderig.serve.pool import ReplicaPool, ReplicaStartError

log = logging.getLogger("coderig.serve")

DEFAULT_IDLE_WITH_SCHEDULE = 15 * 60.0


class PowerState(StrEnum):
    WARM = "warm"
    STOPPING = "stopping"
    SCALED_TO_ZERO = "scaled_to_zero"
    STARTING = "starting"


def decide(
    state: PowerState,
    *,
    in_schedule: bool,
    busy: bool,
    idle_for: float,
    idle_after: float | None,
) -> str | None:
    """What the controller does now: ``"wake"``, ``"sleep"`` or nothing (None)."""
    if state == PowerState.SCALED_TO_ZERO and in_schedule:
        return "wake"
    if (
        state == PowerState.WARM
        and not in_schedule
        and not busy
        and idle_after is not None
        and idle_for >= idle_after
    ):
        return "sleep"
    return None


class IdleController:
    """Watches request activity on a pool and scales it to zero and back."""

    def __init__(
        self,
        pool: ReplicaPool,
        *,
        idle_after: float | None,
        schedule: Schedule | None = None,
        metrics=None,
        check_interval: float | None = None,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        self.pool = pool
        self.schedule = schedule
        if idle_after is None and schedule is not None:
            idle_after = DEFAULT_IDLE_WITH_SCHEDULE
        self.idle_after = idle_after
        self.metrics = metrics
        self.check_interval = check_interval or min(5.0, max(0.2, (idle_after or 60.0) / 10))
        self.clock = clock
        self.state = PowerState.WARM
        self.last_activity = time.monotonic()
        self.waiting = 0
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        if metrics is not None:
            metrics.scaled_to_zero.set_function(
                lambda: 1.0 if self.state == PowerState.SCALED_TO_ZERO else 0.0
            )

    @property
    def serves_when_cold(self) -> bool:
        """True while a request would be served after a cold start (not refused)."""
        return self.state != PowerState.WARM

    def in_schedule(self) -> bool:
        return self.schedule is not None and self.schedule.is_active(self.clock())

    def busy(self) -> bool:
        return self.waiting > 0 or any(r.in_flight for r in self.pool.replicas)

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="idle-controller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            busy = self.busy()
            if busy:
                self.last_activity = time.monotonic()
            action = decide(
                self.state,
                in_schedule=self.in_schedule(),
                busy=busy,
                idle_for=time.monotonic() - self.last_activity,
                idle_after=self.idle_after,
            )
            try:
                if action == "sleep":
                    await self._sleep()
                elif action == "wake":
                    await self._wake("schedule")
            except OpenAIError:
                pass  # logged in _wake; retried on the next tick or request
            except Exception:  # never let the controller die silently
                log.exception("scale-to-zero controller error")

    # --- transitions -----------------------------------------------------------------

    async def ensure_warm(self, request=None) -> None:
        """Called before routing each request: records activity, cold-starts if needed."""
        self.last_activity = time.monotonic()
        if self.state == PowerState.WARM:
            return
        self.waiting += 1
        try:
            await self._wake("request")
        finally:
            self.waiting -= 1
            self.last_activity = time.monotonic()

    async def _sleep(self) -> None:
        async with self._lock:
            if self.state != PowerState.WARM or self.busy():
                return
            quiet = time.monotonic() - self.last_activity
            self.state = PowerState.STOPPING
            log.info(
                "scale to zero: no request for %.0fs; stopping %d replica(s)",
                quiet,
                len(self.pool.replicas),
            )
            await self.pool.scale_to_zero()
            self.state = PowerState.SCALED_TO_ZERO
            if self.metrics is not None:
                self.metrics.idle_shutdowns.inc()

    async def _wake(self, reason: str) -> None:
        async with self._lock:
            if self.state == PowerState.WARM:
                return
            self.state = PowerState.STARTING
            log.info("cold start (%s): starting %d replica(s)", reason, len(self.pool.replicas))
            started = time.monotonic()
            try:
                await self.pool.scale_up()
            except ReplicaStartError as exc:
                log.error("cold start (%s) failed: %s", reason, exc)
                await self.pool.scale_to_zero()
                self.state = PowerState.SCALED_TO_ZERO
                raise OpenAIError(
                    503,
                    f"the model was scaled to zero and could not be started again: {exc}",
                    code="cold_start_failed",
                    headers={"Retry-After": "10"},
                ) from exc
            took = time.monotonic() - started
            self.state = PowerState.WARM
            self.last_activity = time.monotonic()
            log.info("cold start (%s): replicas ready after %.2fs", reason, took)
            if self.metrics is not None:
                self.metrics.cold_starts.labels(reason).inc()
                self.metrics.cold_start_seconds.observe(took)

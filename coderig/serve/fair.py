"""A replica's slots, handed out fairly between developers: :class:`FairSlots` is a counting
semaphore whose waiters are served round-robin across flows (one per developer), each flow holding
at most its share of the slots when ``share`` is on, so one developer's burst waits mostly on
itself. A waiter may also be *held* for a while: it takes a slot only once none is in use, or
when its hold runs out (a prompt with a long uncached part waits for the decodes it would stall;
coderig.serve.generate). See docs/architecture.md, sections 5.2 (fair slots and shares) and
5.11 (cold prompts wait).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable

DEFAULT_WINDOW = 30.0


class FairSlots:
    """A counting semaphore whose waiters are served round-robin across flows, each flow
    holding at most its share of the slots when ``share`` is on."""

    def __init__(
        self,
        slots: int,
        *,
        share: bool = False,
        window: float = DEFAULT_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slots = slots
        self._free = slots
        # flow -> its waiters, oldest first, each with the time its hold ends (0.0: not held);
        # the flow served longest ago comes first.
        self._flows: OrderedDict[str, deque[tuple[asyncio.Future, float]]] = OrderedDict()
        self._running: Counter[str] = Counter()
        self.share = share
        self._window = window
        self._clock = clock
        self._seen: dict[str, float] = {}  # flow -> when it last asked for a slot
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = math.inf

    def locked(self, flow: str | None = None, hold: float = 0.0) -> bool:
        """True when an acquire (by ``flow``, held for ``hold`` seconds) would wait."""
        if hold > 0 and self._free < self.slots:
            return True
        if flow is None or not self.share:
            return self._free == 0 or bool(self._flows)
        return self._free == 0 or self._running[flow] >= self.share_of()

    @property
    def waiting(self) -> int:
        return sum(len(waiters) for waiters in self._flows.values())

    def waiting_in(self, flow: str) -> int:
        return len(self._flows.get(flow, ()))

    def running(self, flow: str) -> int:
        return self._running[flow]

    def share_of(self) -> int:
        """Slots one flow may hold now."""
        if not self.share:
            return self.slots
        return max(1, math.ceil(self.slots / max(1, len(self._active_flows()))))

    def ahead_of(self, flow: str) -> int:
        """Waiters a new request of ``flow`` would have to let go first: its own flow's, and
        from every other flow at most one per turn it waits (it is served in turn n+1 when its
        flow already has n waiting)."""
        turns = len(self._flows.get(flow, ())) + 1
        return sum(min(len(waiters), turns) for waiters in self._flows.values())

    async def acquire(self, flow: str = "", hold: float = 0.0) -> None:
        """Wait for a slot. ``hold`` > 0: take one only when no slot is in use, or once
        ``hold`` seconds have passed; meanwhile the other waiters go first."""
        now = self._clock()
        self._seen[flow] = now
        future = asyncio.get_running_loop().create_future()
        self._flows.setdefault(flow, deque()).append((future, now + hold if hold > 0 else 0.0))
        self._grant()  # a free slot this flow may take is granted here, without waiting
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(flow)  # granted, but its request left before it could run
            else:
                self._forget(flow, future)
            raise

    def release(self, flow: str = "") -> None:
        self._free += 1
        if self._running[flow] > 0:
            self._running[flow] -= 1
            if not self._running[flow]:
                del self._running[flow]
        self._grant()

    def _active_flows(self) -> set[str]:
        """Developers seen in the last ``window`` seconds, or running or waiting now."""
        horizon = self._clock() - self._window
        for flow in [f for f, at in self._seen.items() if at < horizon]:
            del self._seen[flow]
        return set(self._seen) | set(self._running) | set(self._flows)

    def _grant(self) -> None:
        share = self.share_of()
        while self._free > 0:
            idle = self._free == self.slots
            now = self._clock()
            held_until = math.inf
            flow = None
            for f, waiters in self._flows.items():
                if self.share and self._running[f] >= share:
                    continue
                until = waiters[0][1]
                if idle or until <= now:
                    flow = f
                    break
                held_until = min(held_until, until)
            if flow is None:
                if math.isfinite(held_until):
                    self._wake_at(held_until)
                elif self._flows:  # flows wait at their share: look again as developers leave
                    self._recheck_later()
                return
            waiters = self._flows.pop(flow)
            future, _ = waiters.popleft()
            if waiters:  # served: to the back of the line
                self._flows[flow] = waiters
            if future.done():  # cancelled while waiting
                continue
            self._free -= 1
            self._running[flow] += 1
            future.set_result(None)

    def _recheck_later(self) -> None:
        """A flow held at its share waits beside free slots; its share grows when another
        developer drops out of the window, so grant again then."""
        if self._seen:
            self._wake_at(min(self._seen.values()) + self._window, at_least=0.05)

    def _wake_at(self, when: float, at_least: float = 0.0) -> None:
        """Grant again at ``when`` (by :attr:`_clock`), unless a wake-up is due before."""
        if self._timer is not None and not self._timer.cancelled() and self._timer_due <= when:
            return
        if self._timer is not None:
            self._timer.cancel()

        def fire() -> None:
            self._timer = None
            self._timer_due = math.inf
            self._grant()

        self._timer_due = when
        delay = max(at_least, when - self._clock())
        self._timer = asyncio.get_running_loop().call_later(delay, fire)

    def _forget(self, flow: str, future: asyncio.Future) -> None:
        waiters = self._flows.get(flow)
        if waiters is None:
            return
        for entry in waiters:
            if entry[0] is future:
                waiters.remove(entry)
                break
        if not waiters:
            del self._flows[flow]

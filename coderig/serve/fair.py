"""A replica's slots, handed out fairly between developers: :class:`FairSlots` is a counting
semaphore whose waiters are served round-robin across flows (one per developer), each flow holding
at most its share of the slots when ``share`` is on, so one developer's burst waits mostly on
itself. See docs/architecture.md, section 5.2 (fair slots and shares).
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
        # flow -> its waiters, oldest first; the flow served longest ago comes first.
        self._flows: OrderedDict[str, deque[asyncio.Future]] = OrderedDict()
        self._running: Counter[str] = Counter()
        self.share = share
        self._window = window
        self._clock = clock
        self._seen: dict[str, float] = {}  # flow -> when it last asked for a slot
        self._timer: asyncio.TimerHandle | None = None

    def locked(self, flow: str | None = None) -> bool:
        """True when an acquire (by ``flow``) would wait."""
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

    async def acquire(self, flow: str = "") -> None:
        self._seen[flow] = self._clock()
        future = asyncio.get_running_loop().create_future()
        self._flows.setdefault(flow, deque()).append(future)
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
            flow = next(
                (f for f in self._flows if not self.share or self._running[f] < share), None
            )
            if flow is None:
                if self._flows:  # flows wait at their share: look again as developers leave
                    self._recheck_later()
                return
            waiters = self._flows.pop(flow)
            future = waiters.popleft()
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
        if self._timer is not None and not self._timer.cancelled():
            return
        if not self._seen:
            return
        due = min(self._seen.values()) + self._window - self._clock()

        def fire() -> None:
            self._timer = None
            self._grant()

        self._timer = asyncio.get_running_loop().call_later(max(0.05, due), fire)

    def _forget(self, flow: str, future: asyncio.Future) -> None:
        waiters = self._flows.get(flow)
        if waiters is None:
            return
        try:
            waiters.remove(future)
        except ValueError:
            pass
        if not waiters:
            del self._flows[flow]

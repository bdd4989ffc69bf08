"""A replica's slots, handed out fairly between developers.

One developer's script or runaway editor plugin must not fill a replica's queue and make the
whole team wait behind it. Waiting requests are grouped into *flows* (one per developer: the API
key's name, else the request's ``user`` or session, else the client's address) and a freed slot
goes to the flows in turn — round-robin, one request per turn, as llm-d's flow control and a
deficit round-robin with equal quanta do — so a developer sending ten times more than the others
waits mostly on themselves. Within a flow, requests keep their arrival order. Admission control
(how many may wait at all, and for how long) is unchanged and decided before a request gets here.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque


class FairSlots:
    """A counting semaphore whose waiters are served round-robin across flows."""

    def __init__(self, slots: int) -> None:
        self._free = slots
        # flow -> its waiters, oldest first; the flow served longest ago comes first.
        self._flows: OrderedDict[str, deque[asyncio.Future]] = OrderedDict()

    def locked(self) -> bool:
        """True when an acquire would wait."""
        return self._free == 0 or bool(self._flows)

    @property
    def waiting(self) -> int:
        return sum(len(waiters) for waiters in self._flows.values())

    def ahead_of(self, flow: str) -> int:
        """Waiters a new request of ``flow`` would have to let go first: its own flow's, and
        from every other flow at most one per turn it waits (it is served in turn n+1 when its
        flow already has n waiting)."""
        turns = len(self._flows.get(flow, ())) + 1
        return sum(min(len(waiters), turns) for waiters in self._flows.values())

    async def acquire(self, flow: str = "") -> None:
        if not self.locked():
            self._free -= 1
            return
        future = asyncio.get_running_loop().create_future()
        self._flows.setdefault(flow, deque()).append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted, but its request left before it could run
            else:
                self._forget(flow, future)
            raise

    def release(self) -> None:
        self._free += 1
        self._grant()

    def _grant(self) -> None:
        while self._free > 0 and self._flows:
            flow, waiters = self._flows.popitem(last=False)
            future = waiters.popleft()
            if waiters:  # served: to the back of the line
                self._flows[flow] = waiters
            if future.done():  # cancelled while waiting
                continue
            self._free -= 1
            future.set_result(None)

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

"""Which replica serves a request: :class:`Router` picks the least busy one or, with ``prefix``
routing, the one that already holds the prompt's longest cached prefix (or the session's last
replica) unless it is much busier, so a developer's next completion reuses that replica's KV
cache. See docs/architecture.md, section 5.1 (prefix routing).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from coderig.serve.pool import NoReplicaAvailable, Replica, ReplicaPool

BLOCK_CHARS = 64


@dataclass
class RouteDecision:
    replica: Replica
    reason: str  # "prefix", "session", "least-busy"
    matched_chars: int = 0
    slot: int | None = None  # the replica's slot that holds the prefix, when known


def prefix_hashes(prompt: str, block: int = BLOCK_CHARS) -> list[bytes]:
    """Hashes of the prompt's prefixes ending at each full block boundary, shortest first."""
    hashes: list[bytes] = []
    digest = hashlib.blake2b(digest_size=12)
    for end in range(block, len(prompt) + 1, block):
        digest.update(prompt[end - block : end].encode("utf-8", errors="surrogatepass"))
        hashes.append(digest.copy().digest())
    return hashes


class _LRU:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: OrderedDict = OrderedDict()

    def get(self, key):
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def put(self, key, value) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.capacity:
            self.items.popitem(last=False)


class Router:
    """Routing policy for one pool: ``least-busy`` or ``prefix``."""

    def __init__(
        self,
        pool: ReplicaPool,
        policy: str = "prefix",
        *,
        min_match_chars: int = 256,
        max_imbalance: int = 2,
        capacity: int = 50_000,
    ) -> None:
        if policy not in ("least-busy", "prefix"):
            raise ValueError(f"unknown routing policy {policy!r}: use least-busy or prefix")
        self.pool = pool
        self.policy = policy
        self.min_match_chars = min_match_chars
        self.max_imbalance = max_imbalance
        self._prefixes = _LRU(capacity)  # prefix hash -> (replica index, slot or None)
        self._sessions = _LRU(capacity // 10)  # session key -> (replica index, slot or None)
        # prefix hash -> replica index, for prompts the replica has computed (not only admitted)
        self._computed = _LRU(capacity)
        self._turn = -1

    def choose(
        self, prompt: str, session: str | None = None, *, model: str | None = None
    ) -> RouteDecision:
        """Every replica serves every model name (adapters are chosen per request)."""
        ready = self.pool.ready()
        if not ready:
            raise NoReplicaAvailable("no replica is ready")
        least = self._least_busy(ready)
        if self.policy == "least-busy":
            return RouteDecision(least, "least-busy")
        # Even with one replica: the prefix or session says which of its slots to use.
        by_index = {r.index: r for r in ready}
        hashes = prefix_hashes(prompt)
        for position in range(len(hashes) - 1, -1, -1):
            place = self._prefixes.get(hashes[position])
            if place is None:
                continue
            matched = (position + 1) * BLOCK_CHARS
            candidate = by_index.get(place[0])
            if candidate is not None and matched >= self.min_match_chars:
                if self._balanced(candidate, least):
                    return RouteDecision(candidate, "prefix", matched, place[1])
            break
        if session:
            place = self._sessions.get(session)
            candidate = by_index.get(place[0]) if place is not None else None
            if candidate is not None and self._balanced(candidate, least):
                return RouteDecision(candidate, "session", slot=place[1])
        return RouteDecision(least, "least-busy")

    def _least_busy(self, ready: list[Replica]) -> Replica:
        """Fewest in flight; ties go round-robin, so an idle pool still spreads the work."""
        fewest = min(r.in_flight for r in ready)
        tied = [r for r in ready if r.in_flight == fewest]
        self._turn = (self._turn + 1) % len(self.pool.replicas)
        return min(tied, key=lambda r: (r.index - self._turn) % len(self.pool.replicas))

    def _balanced(self, candidate: Replica, least: Replica) -> bool:
        return candidate.in_flight <= least.in_flight + self.max_imbalance

    def record(
        self, decision: RouteDecision, prompt: str, session: str | None, slot: int | None = None
    ) -> None:
        """Remember that this replica (and ``slot``, once leased) now holds this prompt: called
        when the request is admitted, so requests queued behind it follow, and again with the
        slot it got."""
        if self.policy != "prefix":
            return
        place = (decision.replica.index, slot if slot is not None else decision.slot)
        for digest in prefix_hashes(prompt):
            self._prefixes.put(digest, place)
        if session:
            self._sessions.put(session, place)

    def record_computed(self, replica: Replica, prompt: str) -> None:
        """The replica has computed this prompt (its first token came back), so its KV cache
        holds it. Unlike :meth:`record`, which is called at admission, a request cancelled
        while it waited for a slot leaves nothing here."""
        if self.policy != "prefix":
            return
        for digest in prefix_hashes(prompt):
            self._computed.put(digest, replica.index)

    def computed_chars(self, replica: Replica, prompt: str) -> int:
        """How much of ``prompt`` (in characters, whole blocks) ``replica`` has computed."""
        hashes = prefix_hashes(prompt)
        for position in range(len(hashes) - 1, -1, -1):
            if self._computed.get(hashes[position]) == replica.index:
                return (position + 1) * BLOCK_CHARS
        return 0

"""API keys: who may use the gateway, and how fast.

Keys come from ``--api-keys FILE`` (one per line, ``key`` or ``name:key``; ``#`` comments) or
the ``CODERIG_API_KEYS`` environment variable (comma-separated, same forms). The file is
re-read when it changes, so revoking a key is deleting its line — no restart.

Only SHA-256 digests of keys are kept, and a presented key is compared against *every* digest
with ``hmac.compare_digest`` (no early exit), so response time says nothing about how close a
guess was. Keys never reach logs or metrics; a key's *name* does (``name:key``, or ``key-N`` by
position when unnamed).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from starlette.requests import Request

from coderig.serve.errors import OpenAIError

ENV_VAR = "CODERIG_API_KEYS"


@dataclass(frozen=True)
class Principal:
    """The caller, as far as logs and metrics may know it."""

    name: str


ANONYMOUS = Principal("anonymous")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def parse_keys(lines: list[str]) -> dict[bytes, str]:
    """Digest -> name, from ``key`` or ``name:key`` entries."""
    keys: dict[bytes, str] = {}
    position = 0
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        position += 1
        name, sep, key = line.partition(":")
        if not sep:
            name, key = f"key-{position}", line
        name, key = name.strip(), key.strip()
        if not key:
            raise ValueError(f"API key entry {position} ({name!r}) has an empty key")
        if len(key) < 8:
            raise ValueError(f"API key {name!r} is shorter than 8 characters")
        keys[_digest(key)] = name
    return keys


@dataclass
class KeyStore:
    """The current set of keys; re-reads its file at most once a second when it changed."""

    path: Path | None = None
    env_value: str | None = None
    _keys: dict[bytes, str] = field(default_factory=dict)
    _mtime: float | None = None
    _checked: float = 0.0

    @classmethod
    def from_sources(cls, path: Path | None, env: dict[str, str] | None = None) -> KeyStore | None:
        """None when no keys are configured (the gateway is then open, and says so)."""
        env_value = (env if env is not None else os.environ).get(ENV_VAR) or None
        if path is None and env_value is None:
            return None
        store = cls(path=path, env_value=env_value)
        store.reload(force=True)
        return store

    def reload(self, *, force: bool = False) -> None:
        entries: list[str] = []
        if self.env_value:
            entries += self.env_value.split(",")
        if self.path is not None:
            try:
                mtime = self.path.stat().st_mtime
            except FileNotFoundError as exc:
                raise ValueError(f"API keys file {self.path} does not exist") from exc
            if not force and mtime == self._mtime:
                return
            entries += self.path.read_text().splitlines()
            self._mtime = mtime
        self._keys = parse_keys(entries)

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if self.path is None or now - self._checked < 1.0:
            return
        self._checked = now
        try:
            self.reload()
        except (OSError, ValueError):
            # A half-written or deleted file must not open the gateway or drop every key:
            # keep the last good set until the file is readable again.
            pass

    def __len__(self) -> int:
        return len(self._keys)

    def names(self) -> list[str]:
        return sorted(set(self._keys.values()))

    def lookup(self, presented: str) -> str | None:
        """The key's name, or None; compares against every key in constant time."""
        self._maybe_reload()
        digest = _digest(presented)
        found: str | None = None
        for known, name in self._keys.items():
            if hmac.compare_digest(known, digest):
                found = name
        return found


class RateLimiter:
    """A token bucket per key name: ``rate`` requests/s on average, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._buckets: dict[str, tuple[float, float]] = {}

    def check(self, name: str) -> float:
        """0 when admitted; otherwise the seconds until a request would be."""
        now = time.monotonic()
        tokens, last = self._buckets.get(name, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[name] = (tokens - 1.0, now)
            return 0.0
        self._buckets[name] = (tokens, now)
        return (1.0 - tokens) / self.rate


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class Authenticator:
    """What every protected route depends on: a key check, then the per-key rate limit."""

    def __init__(self, keys: KeyStore | None, limiter: RateLimiter | None = None) -> None:
        self.keys = keys
        self.limiter = limiter

    @property
    def enabled(self) -> bool:
        return self.keys is not None

    def authenticate(self, authorization: str | None) -> Principal:
        if self.keys is None:
            principal = ANONYMOUS
        else:
            token = bearer_token(authorization)
            if token is None:
                raise OpenAIError(
                    401,
                    "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
                    code="missing_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            name = self.keys.lookup(token)
            if name is None:
                raise OpenAIError(
                    401,
                    "Incorrect API key provided.",
                    code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            principal = Principal(name)
        if self.limiter is not None:
            wait = self.limiter.check(principal.name)
            if wait > 0:
                raise OpenAIError(
                    429,
                    f"Rate limit for {principal.name!r} reached "
                    f"({self.limiter.rate:g} requests/s); retry after {wait:.1f}s.",
                    code="rate_limit_exceeded",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
        return principal


async def require_key(request: Request) -> Principal:
    """FastAPI dependency for every protected route (``dependencies=[Depends(require_key)]``).

    The principal is left on ``request.state.principal`` for routing and metrics.
    """
    gateway = request.app.state.gateway
    principal = gateway.auth.authenticate(request.headers.get("authorization"))
    request.state.principal = principal
    gateway.metrics.key_requests.labels(principal.name).inc()
    return principal

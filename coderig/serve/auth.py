"""API keys: who may use the gateway, and how fast.

Two roles. **Developer keys** come from ``--api-keys FILE`` (one per line, ``key`` or
``name:key``; ``#`` comments) or the ``CODERIG_API_KEYS`` environment variable (comma-separated,
same forms); without any, the completion APIs are open. **Admin keys** come from
``--admin-keys FILE`` or ``CODERIG_ADMIN_KEYS`` in the same forms; they may do everything a
developer key may, and call the admin routes (adapter load/unload), which do not exist at all —
404, absent from the OpenAPI document — when no admin key is configured. A separate file rather
than a role column: the file an operator hands to a team's key tooling can then never grant admin
by a typo. Files are re-read when they change, so revoking a key is deleting its line.

Only SHA-256 digests of keys are kept, and a presented key is compared against *every* digest
with ``hmac.compare_digest`` (no early exit), so response time says nothing about how close a
guess was. Keys never reach logs or metrics; a key's *name* does (``name:key``, or ``key-N`` by
position when unnamed).
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastapi.security.utils import get_authorization_scheme_param
from starlette.requests import Request

from coderig.serve.errors import OpenAIError

ENV_VAR = "CODERIG_API_KEYS"
ADMIN_ENV_VAR = "CODERIG_ADMIN_KEYS"


@dataclass(frozen=True)
class Principal:
    """The caller, as far as logs and metrics may know it."""

    name: str
    admin: bool = False


ANONYMOUS = Principal("anonymous")

# Requests with the same session id (or OpenAI ``user``) stick to one replica (prefix routing)
# and are one developer's flow (fair queuing).
SESSION_HEADER = "X-Coderig-Session"


@dataclass(frozen=True)
class Caller:
    """Who sent the request being handled, for fair queuing (:mod:`coderig.serve.fair`)."""

    key: str | None  # the API key's name; None on an open gateway
    session: str | None  # the X-Coderig-Session header
    address: str | None  # the client's IP address

    def flow(self, user: str | None = None) -> str:
        """One developer: their key, else the request's ``user`` or session, else their address."""
        if self.key is not None:
            return f"key:{self.key}"
        if user or self.session:
            return f"user:{user or self.session}"
        return f"addr:{self.address}"


# Set by require_key for the request being handled; read when a generation is queued.
current_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "coderig_caller", default=None
)


def current_flow(user: str | None = None) -> str | None:
    """The developer of the request being handled (:meth:`Caller.flow`); None outside one."""
    caller = current_caller.get()
    return caller.flow(user) if caller is not None else None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def parse_keys(lines: list[str]) -> dict[bytes, str]:
    """Digest -> name, from ``key`` or ``name:key`` entries."""
    return {digest: name for digest, name, _ in parse_entries(lines)}


def parse_entries(lines: list[str]) -> list[tuple[bytes, str, dict[str, int]]]:
    """(digest, name, limits) per ``key`` or ``name:key`` entry, optionally followed by
    per-key limits such as ``tpm=20000`` (tokens per minute; 0 = unlimited)."""
    entries = []
    position = 0
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        position += 1
        head, *options = line.split()
        name, sep, key = head.partition(":")
        if not sep:
            name, key = f"key-{position}", head
        name, key = name.strip(), key.strip()
        if not key:
            raise ValueError(f"API key entry {position} ({name!r}) has an empty key")
        if len(key) < 8:
            raise ValueError(f"API key {name!r} is shorter than 8 characters")
        entries.append((_digest(key), name, _parse_limits(name, options)))
    return entries


KEY_LIMITS = {"tpm": "tokens per minute"}


def _parse_limits(name: str, options: list[str]) -> dict[str, int]:
    limits = {}
    for option in options:
        field_name, sep, value = option.partition("=")
        if not sep or field_name not in KEY_LIMITS or not value.isdigit():
            known = ", ".join(f"{k}=N ({v})" for k, v in KEY_LIMITS.items())
            raise ValueError(f"API key {name!r}: cannot read {option!r}; known limits: {known}")
        limits[field_name] = int(value)
    return limits


@dataclass
class KeyStore:
    """The current set of keys; re-reads its file at most once a second when it changed."""

    path: Path | None = None
    env_value: str | None = None
    _keys: dict[bytes, str] = field(default_factory=dict)
    # per key name: limits given on its line (``tpm=N``), overriding the server-wide ones
    limits: dict[str, dict[str, int]] = field(default_factory=dict)
    _mtime: float | None = None
    _checked: float = 0.0

    @classmethod
    def from_sources(
        cls, path: Path | None, env: dict[str, str] | None = None, *, env_var: str = ENV_VAR
    ) -> KeyStore | None:
        """None when no keys are configured (the gateway is then open, and says so)."""
        env_value = (env if env is not None else os.environ).get(env_var) or None
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
        parsed = parse_entries(entries)
        self._keys = {digest: name for digest, name, _ in parsed}
        self.limits = {name: limits for _, name, limits in parsed if limits}

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


class TokenBudget:
    """Tokens (prompt + completion) each key may use per minute, as LiteLLM's TPM limits.

    A bucket per key holds up to a minute's worth and refills continuously. A request is
    admitted while the bucket is above zero and charged what it really used once it ends
    (cancelled ones too: the engine did that work), so one long request may take the bucket
    below zero: the key then waits until it has paid that back. ``limit_for(name)`` gives a
    key's own limit (its ``tpm=`` in the keys file), else ``per_minute``; 0 means unlimited.
    """

    def __init__(self, per_minute: int | None, limit_for=None, clock=time.monotonic) -> None:
        self.per_minute = per_minute
        self.limit_for = limit_for or (lambda name: None)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens left, when)

    def limit(self, name: str) -> int | None:
        own = self.limit_for(name)
        limit = own if own is not None else self.per_minute
        return limit or None

    def _level(self, name: str, limit: int, now: float) -> float:
        left, then = self._buckets.get(name, (float(limit), now))
        return min(float(limit), left + (now - then) * limit / 60.0)

    def check(self, name: str) -> float:
        """0 when ``name`` may send a request now; otherwise the seconds until it may."""
        limit = self.limit(name)
        if limit is None:
            return 0.0
        now = self.clock()
        level = self._level(name, limit, now)
        self._buckets[name] = (level, now)
        return 0.0 if level > 0 else (1.0 - level) * 60.0 / limit

    def charge(self, name: str, tokens: int) -> None:
        limit = self.limit(name)
        if limit is None:
            return
        now = self.clock()
        self._buckets[name] = (self._level(name, limit, now) - tokens, now)


def bearer_token(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, parsed as FastAPI's ``HTTPBearer``
    parses it; None when absent or another scheme. (``HTTPBearer`` itself answers 403 without
    OpenAI's error body, and Tabby's dispatch checks keys outside dependency injection.)"""
    scheme, token = get_authorization_scheme_param(authorization)
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class Authenticator:
    """What every protected route depends on: a key check, then the per-key rate limit."""

    def __init__(
        self,
        keys: KeyStore | None,
        limiter: RateLimiter | None = None,
        admin_keys: KeyStore | None = None,
        tokens_per_minute: int | None = None,
    ) -> None:
        self.keys = keys
        self.limiter = limiter
        self.admin_keys = admin_keys
        self.budget = TokenBudget(tokens_per_minute, self._own_limit("tpm"))

    def _own_limit(self, limit: str):
        def lookup(name: str) -> int | None:
            for store in (self.admin_keys, self.keys):
                if store is not None and name in store.limits:
                    return store.limits[name].get(limit)
            return None

        return lookup

    @property
    def enabled(self) -> bool:
        return self.keys is not None

    @property
    def has_admin(self) -> bool:
        return self.admin_keys is not None

    def _identify(self, authorization: str | None, *, required: bool) -> Principal:
        """The key's principal; ANONYMOUS when no key is needed and none was sent."""
        token = bearer_token(authorization)
        if token is None:
            if not required:
                return ANONYMOUS
            raise OpenAIError(
                401,
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
                code="missing_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        # Both stores are always searched, so timing does not tell an admin key from another.
        admin = self.admin_keys.lookup(token) if self.admin_keys is not None else None
        developer = self.keys.lookup(token) if self.keys is not None else None
        if admin is not None:
            return Principal(admin, admin=True)
        if developer is not None:
            return Principal(developer)
        if not required:  # an open gateway ignores whatever a client sends (editors send junk)
            return ANONYMOUS
        raise OpenAIError(
            401,
            "Incorrect API key provided.",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )

    def authenticate(self, authorization: str | None) -> Principal:
        principal = self._identify(authorization, required=self.keys is not None)
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
        if principal is not ANONYMOUS:  # budgets are per key; an open gateway has none
            wait = self.budget.check(principal.name)
            if wait > 0:
                raise OpenAIError(
                    429,
                    f"Token budget for {principal.name!r} used up "
                    f"({self.budget.limit(principal.name)} tokens/minute); "
                    f"retry after {wait:.0f}s.",
                    code="token_budget_exceeded",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
        return principal

    def authenticate_admin(self, authorization: str | None) -> Principal:
        """An admin key, or 401 (none / unknown) or 403 (a developer key)."""
        if self.admin_keys is None:  # the routes are not mounted; this is a second guard
            raise OpenAIError(404, "no admin key is configured", code="not_found")
        principal = self._identify(authorization, required=True)
        if not principal.admin:
            raise OpenAIError(
                403,
                f"the key {principal.name!r} is a developer key; this route needs an admin key "
                "(--admin-keys)",
                code="permission_denied",
            )
        return principal


async def require_key(request: Request) -> Principal:
    """FastAPI dependency for every protected route (``dependencies=[Depends(require_key)]``).

    The principal is left on ``request.state.principal`` for routing and metrics.
    """
    gateway = request.app.state.gateway
    principal = _admitted(request, gateway.auth.authenticate)
    current_caller.set(
        Caller(
            key=None if principal is ANONYMOUS else principal.name,
            session=request.headers.get(SESSION_HEADER),
            address=request.client.host if request.client else None,
        )
    )
    return principal


async def require_admin(request: Request) -> Principal:
    """FastAPI dependency for admin routes (adapter load/unload)."""
    return _admitted(request, request.app.state.gateway.auth.authenticate_admin)


def _admitted(request: Request, check) -> Principal:
    """The principal ``check`` finds in the request's Authorization header, left on
    ``request.state.principal`` for routing and metrics, and counted by key name."""
    principal = check(request.headers.get("authorization"))
    request.state.principal = principal
    request.app.state.gateway.metrics.key_requests.labels(principal.name).inc()
    return principal

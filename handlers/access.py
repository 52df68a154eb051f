"""Who may ask what: API keys, stream tokens, the Host and Origin checks, and rate limits."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from limits import RateLimitItem, parse_many, storage, strategies
from limits.aio import storage as aio_storage
from limits.aio import strategies as aio_strategies
from limits.errors import StorageError
from redis.asyncio import Redis
from tornado.httputil import HTTPServerRequest

from conf.keys import Identity, KeyRing
from conf.settings import Settings
from core.errors import Forbidden, Throttled, Unauthorized
from core.tokens import StreamTokens

log = logging.getLogger("orchestrator.ratelimits")

# Seconds the fleet's shared rate-limit counters are left alone after Redis failed them.
SHARED_RETRY_AFTER = 5

# Methods that change something; a browser sends them cross-site without asking only in forms.
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class RateState:
    """Where a caller stands, as the IETF RateLimit and RateLimit-Policy header fields say it."""

    policy: str  # every limit: "requests-0";q=20;w=1, "requests-1";q=600;w=60
    limit: str  # the tightest: "requests-1";r=12;t=40 (requests left, seconds until the window resets)


class RateLimits:
    """Sliding-window counters per caller (the `limits` library), one set per kind of request.

    In one process they are kept in memory. Instances sharing a Redis store share the counters too
    (`share`), so a caller's limit holds across the fleet, not per instance. Should Redis fail, each
    instance falls back to its own counters until it answers again: a limit held per instance for a
    while is better than refusing everyone, or letting everyone through.
    """

    def __init__(self, **limits_by_kind: str) -> None:
        self._local = strategies.SlidingWindowCounterRateLimiter(storage.MemoryStorage())
        self._shared: aio_strategies.SlidingWindowCounterRateLimiter | None = None
        self._shared_failed_at = -math.inf  # when the shared counters last failed (monotonic)
        self._limits: dict[str, list[RateLimitItem]] = {
            kind: parse_many(text) if text.strip() else [] for kind, text in limits_by_kind.items()
        }

    def share(self, client: Redis, prefix: str) -> None:
        """Keep the counters in Redis, through `client`'s connections, under keys starting `prefix`."""
        # The connections come from the store's pool; the URL only names the kind of server.
        options: dict[str, Any] = {"connection_pool": client.connection_pool}
        shared = aio_storage.RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix=prefix,
            wrap_exceptions=True,
            **options,
        )
        self._shared = aio_strategies.SlidingWindowCounterRateLimiter(shared)

    async def hit(self, kind: str, who: str) -> RateState | None:
        """Count one request of `kind` by `who`; raises Throttled when over any of its limits."""
        limits = self._limits[kind]
        if not limits:
            return None
        policy = ", ".join(
            f'"{kind}-{i}";q={lim.amount};w={lim.get_expiry()}' for i, lim in enumerate(limits)
        )
        windows = await self._count(limits, kind, who)
        states = []
        for index, (limit, (allowed, remaining, reset_time)) in enumerate(zip(limits, windows, strict=True)):
            reset = max(1, math.ceil(reset_time - time.time()))
            if not allowed:
                headers = {"RateLimit-Policy": policy, "RateLimit": f'"{kind}-{index}";r=0;t={reset}'}
                message = f"too many requests: the limit is {limit}; try again in {reset} s"
                raise Throttled(message, reset, headers)
            states.append((remaining, reset, f"{kind}-{index}"))
        remaining, reset, name = min(states)
        return RateState(policy, f'"{name}";r={remaining};t={reset}')

    async def _count(self, limits: list[RateLimitItem], kind: str, who: str) -> list[tuple[bool, int, float]]:
        """Hit each limit: whether it allowed the request, what remains, when its window resets.
        A limit already exceeded stops the count (the later ones are not charged for a refusal)."""
        if self._shared is not None and time.monotonic() - self._shared_failed_at > SHARED_RETRY_AFTER:
            try:
                return await self._count_shared(self._shared, limits, kind, who)
            except StorageError as exc:
                self._shared_failed_at = time.monotonic()
                log.warning(
                    "rate limits: Redis failed (%s); each instance counts on its own for %d s",
                    exc.storage_error,
                    SHARED_RETRY_AFTER,
                )
        windows = []
        for limit in limits:
            allowed = self._local.hit(limit, kind, who)
            stats = self._local.get_window_stats(limit, kind, who)
            windows.append((allowed, stats.remaining, stats.reset_time))
            if not allowed:
                break
        return windows

    @staticmethod
    async def _count_shared(
        limiter: aio_strategies.SlidingWindowCounterRateLimiter,
        limits: list[RateLimitItem],
        kind: str,
        who: str,
    ) -> list[tuple[bool, int, float]]:
        windows = []
        for limit in limits:
            allowed = await limiter.hit(limit, kind, who)
            stats = await limiter.get_window_stats(limit, kind, who)
            windows.append((allowed, stats.remaining, stats.reset_time))
            if not allowed:
                break
        return windows


class Access:
    """The service's access rules, built once from the settings and asked by every handler."""

    def __init__(self, settings: Settings) -> None:
        keys_file = Path(settings.api_keys_file) if settings.api_keys_file else None
        self.keys = KeyRing.load(keys_file, settings.api_keys)
        self.tokens = StreamTokens(settings.token_secret, settings.stream_token_ttl)
        hosts = {h.strip().lower() for h in settings.allowed_hosts.split(",") if h.strip()}
        # With keys, a request must prove who it is, so where it was addressed matters no more.
        self.allowed_hosts = None if "*" in hosts or self.keys else frozenset(hosts)
        self.allowed_origins = settings.allowed_origins
        self.rates = RateLimits(requests=settings.rate_limit, creates=settings.create_rate_limit)

    def check_host(self, request: HTTPServerRequest) -> None:
        """Against DNS rebinding: without keys, answer only to the names the service is reached by."""
        if self.allowed_hosts is not None and request.host_name not in self.allowed_hosts:
            raise Forbidden(f"this service does not answer to the host {request.host_name!r}")

    def check_origin(self, request: HTTPServerRequest) -> None:
        """Refuse a cross-site request from a page whose origin CORS does not allow (CSRF)."""
        if "*" in self.allowed_origins:
            return
        origin = request.headers.get("Origin")
        if origin is not None:
            if origin in self.allowed_origins or origin == f"{request.protocol}://{request.host}":
                return
            raise Forbidden(f"requests from the origin {origin!r} are not allowed")
        if request.headers.get("Sec-Fetch-Site") == "cross-site":
            raise Forbidden("cross-site requests are not allowed")

    def identify(self, request: HTTPServerRequest) -> Identity | None:
        """The key's identity; None when keys are off or no key was sent. A wrong key is a 401."""
        if not self.keys:
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if not header:
            return None
        identity = self.keys.identify(key.strip()) if scheme.lower() == "bearer" else None
        if identity is None:
            raise Unauthorized("the API key is not valid")
        return identity

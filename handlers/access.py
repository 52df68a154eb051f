"""Who may ask what: API keys, stream tokens, the Host and Origin checks, and rate limits."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from limits import RateLimitItem, parse_many, storage, strategies
from tornado.httputil import HTTPServerRequest

from conf.keys import Identity, KeyRing
from conf.settings import Settings
from core.errors import Forbidden, Throttled, Unauthorized
from core.tokens import StreamTokens

# Methods that change something; a browser sends them cross-site without asking only in forms.
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class RateState:
    """Where a caller stands, as the IETF RateLimit and RateLimit-Policy header fields say it."""

    policy: str  # every limit: "requests-0";q=20;w=1, "requests-1";q=600;w=60
    limit: str  # the tightest: "requests-1";r=12;t=40 (requests left, seconds until the window resets)


class RateLimits:
    """Sliding-window counters per caller (the `limits` library), one set per kind of request."""

    def __init__(self, **limits_by_kind: str) -> None:
        self._limiter = strategies.SlidingWindowCounterRateLimiter(storage.MemoryStorage())
        self._limits: dict[str, list[RateLimitItem]] = {
            kind: parse_many(text) if text.strip() else [] for kind, text in limits_by_kind.items()
        }

    def hit(self, kind: str, who: str) -> RateState | None:
        """Count one request of `kind` by `who`; raises Throttled when over any of its limits."""
        limits = self._limits[kind]
        if not limits:
            return None
        policy = ", ".join(
            f'"{kind}-{i}";q={lim.amount};w={lim.get_expiry()}' for i, lim in enumerate(limits)
        )
        states = []
        for index, limit in enumerate(limits):
            allowed = self._limiter.hit(limit, kind, who)
            stats = self._limiter.get_window_stats(limit, kind, who)
            reset = max(1, math.ceil(stats.reset_time - time.time()))
            if not allowed:
                headers = {"RateLimit-Policy": policy, "RateLimit": f'"{kind}-{index}";r=0;t={reset}'}
                message = f"too many requests: the limit is {limit}; try again in {reset} s"
                raise Throttled(message, reset, headers)
            states.append((stats.remaining, reset, f"{kind}-{index}"))
        remaining, reset, name = min(states)
        return RateState(policy, f'"{name}";r={remaining};t={reset}')


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

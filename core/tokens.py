"""Stream tokens: short-lived signed grants to read one session's stream, for clients without headers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time

SIGNATURE_BYTES = 16


class StreamTokens:
    """`sign(session_id)` gives a token that `valid(session_id, token)` accepts until it expires.

    A token is its expiry time and an HMAC-SHA256 of the session id and that time under the server's
    secret: it names no key, grants nothing but reading that one session's stream, and cannot be
    stretched or moved to another session. With no secret configured each process makes its own,
    so tokens do not outlive a restart (share `token_secret` between instances).
    """

    def __init__(self, secret: str, ttl: float) -> None:
        self._secret = secret.encode() if secret else secrets.token_bytes(32)
        self.ttl = ttl

    def _signature(self, session_id: str, expires: int) -> bytes:
        message = session_id.encode() + b"\x00" + struct.pack(">Q", expires)
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:SIGNATURE_BYTES]

    def sign(self, session_id: str, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + self.ttl)
        raw = struct.pack(">Q", expires) + self._signature(session_id, expires)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def valid(self, session_id: str, token: str, now: float | None = None) -> bool:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            return False
        if len(raw) != 8 + SIGNATURE_BYTES:
            return False
        (expires,) = struct.unpack(">Q", raw[:8])
        if expires < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(raw[8:], self._signature(session_id, expires))

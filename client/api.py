"""The plain HTTP calls the client makes to the service, and the one error type the client raises."""

from __future__ import annotations

import re
from typing import Any

import requests

TIMEOUT = 30.0
# The part of a connection error a person needs: "[Errno 111] Connection refused".
ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")]+")


class ClientError(Exception):
    """Something the client could not do; the message says what, for a person to read."""


def error_message(response: requests.Response) -> str:
    """The service's JSON error text, or the HTTP status line when there is none."""
    try:
        return f"{response.status_code} {response.json()['error']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code} {response.reason}"


def unreachable(base_url: str, exc: requests.RequestException) -> ClientError:
    """A short account of a failed connection, without urllib3's nesting."""
    reason = ERRNO.search(str(exc))
    return ClientError(f"cannot reach {base_url}: {reason.group(0) if reason else exc}")


class API:
    def __init__(self, http: requests.Session, base_url: str) -> None:
        self.http, self.base_url = http, base_url.rstrip("/")

    def get(self, path: str) -> requests.Response:
        """GET a path of the service; a ClientError unless it answers 200."""
        return self._send("GET", path)

    def create_session(self, topic: str) -> dict[str, Any]:
        response = self._send("POST", "/api/sessions", json={"topic": topic}, expect=201)
        return {"id": response.json()["id"], "topic": topic}

    def get_session(self, session_id: str) -> dict[str, Any]:
        return self._send("GET", f"/api/sessions/{session_id}").json()

    def _send(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> requests.Response:
        try:
            response = self.http.request(method, self.base_url + path, timeout=TIMEOUT, **kwargs)
        except requests.ConnectionError as exc:
            raise unreachable(self.base_url, exc) from None
        if response.status_code != expect:
            raise ClientError(f"{method} {path}: {error_message(response)}")
        return response

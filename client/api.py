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


class AuthError(ClientError):
    """The service wants an API key, or did not accept the one given (a 401)."""


def error_message(response: requests.Response) -> str:
    """The service's JSON error text, or the HTTP status line when there is none."""
    try:
        return f"{response.status_code} {response.json()['error']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code} {response.reason}"


def retry_after(response: requests.Response) -> float | None:
    """The seconds a 429 or 503 asks the client to wait (Retry-After in seconds), if it says."""
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if value.isdigit() else None


def refusal(response: requests.Response, http: requests.Session) -> ClientError | None:
    """The error for an answer that is about access or load rather than the request itself, or None.

    401 becomes an AuthError that says whether a key was missing or refused; 429 says how long to wait.
    """
    if response.status_code == 401:
        if http.headers.get("Authorization"):
            return AuthError(
                f"the service did not accept the API key ({error_message(response)}); "
                "check --api-key or ORCH_API_KEY"
            )
        return AuthError(
            f"the service needs an API key ({error_message(response)}); "
            "give it with --api-key KEY or the ORCH_API_KEY environment variable"
        )
    if response.status_code == 429:
        wait = retry_after(response)
        later = f"try again in {wait:g} s" if wait is not None else "try again later"
        return ClientError(f"the service is getting too many requests from this client: {later}")
    return None


def unreachable(base_url: str, exc: requests.RequestException) -> ClientError:
    """A short account of a failed connection, without urllib3's nesting."""
    reason = ERRNO.search(str(exc))
    return ClientError(f"cannot reach {base_url}: {reason.group(0) if reason else exc}")


def authorize(http: requests.Session, api_key: str | None) -> None:
    """Send `Authorization: Bearer <key>` on every request `http` makes (the API and the stream)."""
    if api_key:
        http.headers["Authorization"] = f"Bearer {api_key}"


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
            refused = refusal(response, self.http)
            if refused is not None:
                raise refused
            raise ClientError(f"{method} {path}: {error_message(response)}")
        return response

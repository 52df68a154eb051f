"""CORS exactly as the contract lists it, preflight included, with the origins configurable."""

from __future__ import annotations

import pytest

CONTRACT = {
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Accept, Authorization, Content-Type, X-CSRF-Token",
    "Access-Control-Expose-Headers": "Link",
}
PREFLIGHT = {
    "Origin": "http://example.com",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "Content-Type",
}


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/api/sessions", "/api/sessions/abc/run", "/health"])
async def test_cors_preflight_answers_204_with_the_contract_headers(api, path):
    status, body, headers = await api.request("OPTIONS", path, headers=PREFLIGHT)
    assert status == 204 and body == b""
    assert headers["Access-Control-Allow-Origin"] == "*"
    for name, value in CONTRACT.items():
        assert headers[name] == value


@pytest.mark.gen_test
async def test_cors_headers_are_on_answers_and_errors_alike(api):
    for method, path, body in (("POST", "/api/sessions", {"topic": "x"}), ("GET", "/api/sessions/x", None)):
        _, _, headers = await api.request(method, path, body, headers={"Origin": "http://example.com"})
        assert headers["Access-Control-Allow-Origin"] == "*"
        for name, value in CONTRACT.items():
            assert headers[name] == value


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "config_overrides", [{"cors_origins": "https://app.example.com, http://localhost:3000"}]
)
async def test_cors_with_configured_origins_allows_only_those(api):
    _, _, headers = await api.request(
        "OPTIONS", "/api/sessions", headers={**PREFLIGHT, "Origin": "http://localhost:3000"}
    )
    assert headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "Origin" in headers["Vary"]
    _, _, headers = await api.request(
        "OPTIONS", "/api/sessions", headers={**PREFLIGHT, "Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in headers

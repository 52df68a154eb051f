"""The OpenAI-compatible client, its settings, and how its failures become ProviderErrors.

Why the official `openai` client and not Tornado's: it parses the streamed wire format exactly
(`data:` chunks, `[DONE]`, an error object sent mid-stream, the usage chunk) and is maintained as
the API changes; its HTTP layer gives a true idle timeout (a read timeout between chunks) and closes
the connection when a call is cancelled. Its own retries are off: the provider retries each failed
call itself, so clients can be told with `step-retry`. Its read timeout is only a backstop: pings
(`: ping` comments, which llama.cpp's Python server sends) reset it, so the provider times tokens.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass, field
from typing import Any

import openai

from core.errors import ProviderError
from workflow.providers.prompts import Prompts

CONNECT_TIMEOUT = 10.0
DETAIL_LIMIT = 200  # characters of a server's error message kept in a step's error
NO_JSON_SCHEMA = "this server does not accept json_schema; use llm_json_mode=json_object or prompt"


@dataclass(frozen=True, kw_only=True)
class LLMConfig:
    base_url: str
    model: str
    api_key: str = field(repr=False)  # never printed, never logged
    temperature: float
    max_tokens: int  # for prose (a section, the summary)
    json_max_tokens: int  # for a structured answer
    step_options: dict[str, dict[str, Any]]
    json_mode: str
    idle_timeout: float
    total_timeout: float
    image_model: str
    image_size: str

    def for_step(self, step: str, json: bool = False) -> tuple[str, float, int]:
        """(model, temperature, max_tokens) for one call of a step, with the step's overrides applied;
        `json`: a structured answer, whose limit is `json_max_tokens`."""
        options = self.step_options.get(step, {})
        limit = "json_max_tokens" if json else "max_tokens"
        return (
            options.get("model", self.model),
            float(options.get("temperature", self.temperature)),
            int(options.get(limit, getattr(self, limit))),
        )

    def describe(self, model: str | None = None) -> str:
        return f"openai provider, model {model or self.model} at {self.base_url}"


class ModelBacked:
    """What a provider that asks a model server holds: its settings, prompts and client."""

    def __init__(self, config: LLMConfig, prompts: Prompts, client: openai.AsyncOpenAI | None = None) -> None:
        self.config = config
        self.prompts = prompts
        self.client = client or make_client(config)

    async def close(self) -> None:
        await self.client.close()


def make_client(config: LLMConfig) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=config.base_url,
        # Local servers (Ollama, llama.cpp, vLLM) take any key; the client insists on one.
        api_key=config.api_key or "not-needed",
        max_retries=0,
        timeout=openai.Timeout(config.total_timeout, connect=CONNECT_TIMEOUT, read=2 * config.idle_timeout),
    )


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds or as an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    moment = email.utils.parsedate_to_datetime(value) if "," in value else None
    return max(0.0, moment.timestamp() - time.time()) if moment else None


def provider_error(
    exc: openai.OpenAIError,
    where: str,
    read_timeout: float,
    asked_json_schema: bool = False,
    mid_answer: bool = False,
) -> ProviderError:
    """Sort a client failure: 429, 5xx, network trouble, silence and mid-stream errors are transient;
    anything else (400, 401, 403, 404, 422...) fails at once, naming the provider and model. So does
    any refusal of `response_format` when json_schema was asked for: retrying cannot change it."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = _message(exc.body) or exc.message
        if asked_json_schema and ("response_format" in detail or "json_schema" in detail):
            return ProviderError(f"{where} answered {status}: {NO_JSON_SCHEMA} ({readable(detail, 120)})")
        transient = status in (408, 409, 429) or status >= 500
        retry_after = retry_after_seconds(exc.response.headers.get("retry-after"))
        return ProviderError(
            f"{where} answered {status}: {readable(detail)}", transient=transient, retry_after=retry_after
        )
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError(f"{where} sent nothing for {read_timeout:g} s", transient=True)
    if isinstance(exc, openai.APIConnectionError):
        if mid_answer:  # it was reached, then the connection broke (a crashed or killed server)
            return ProviderError(
                f"the connection to {where} broke mid-answer: {exc.__cause__ or exc}", transient=True
            )
        return ProviderError(f"cannot reach {where}: {exc.__cause__ or exc}", transient=True)
    if isinstance(exc, openai.APIError):
        # An error object inside the stream: the server gave up mid-answer.
        return ProviderError(
            f"{where} failed mid-answer: {readable(_message(exc.body) or exc.message)}", transient=True
        )
    return ProviderError(f"{where}: {readable(str(exc))}")


def readable(detail: str, limit: int = DETAIL_LIMIT) -> str:
    """A server's message as one line of at most `limit` characters (tracebacks and validation dumps
    can run to pages)."""
    line = " ".join(detail.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _message(body: object) -> str | None:
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(body.get("message"), str):
            return body["message"]
    return None

"""The service's one typed settings object: defaults < conf file < ORCH_* environment < command line."""

import argparse
import base64
import dataclasses
import json
import os
import socket
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from limits import parse_many

from core.errors import SettingsError
from core.models import STEP_NAMES
from workflow.engine.options import EngineOptions
from workflow.providers.openai_client import LLMConfig
from workflow.steps.retry import RetryPolicy
from workflow.steps.sink import UsagePolicy
from workflow.webhooks.dispatcher import DeliveryOptions
from workflow.webhooks.messages import EVENT_TYPES as WEBHOOK_EVENTS
from workflow.webhooks.messages import WebhookPolicy, WebhookTarget

PROJECT_DIR = Path(__file__).resolve().parent.parent

DEFAULT_CONF_FILE = PROJECT_DIR / "conf" / "orchestrator.toml"
ENV_PREFIX = "ORCH_"


def option(
    default: Any,
    help: str,
    *,
    minimum: float | None = None,
    choices: Sequence[str] = (),
    parse: Callable[[Any], Any] | None = None,
    secret: bool = False,
) -> Any:
    metadata = {"help": help, "minimum": minimum, "choices": tuple(choices), "parse": parse}
    return field(default=default, metadata=metadata, repr=not secret)


TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _to_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    word = str(raw).strip().lower()
    if word not in TRUE_WORDS | FALSE_WORDS:
        raise ValueError(raw)
    return word in TRUE_WORDS


STEP_OPTION_KEYS = {"model": str, "temperature": float, "max_tokens": int, "json_max_tokens": int}


def _to_step_options(raw: Any) -> str:
    """Per-step model options, checked, kept as canonical JSON (settings stay hashable and printable)."""
    if isinstance(raw, str):
        raw = json.loads(raw) if raw.strip() else {}
    if not isinstance(raw, dict):
        raise ValueError(raw)
    for step, options in raw.items():
        if step not in STEP_NAMES or not isinstance(options, dict):
            raise ValueError(f"{step!r} is not a step name with a table of options")
        for key, value in options.items():
            kind = STEP_OPTION_KEYS.get(key)
            if (
                kind is None
                or isinstance(value, bool)
                or not isinstance(value, (kind, int) if kind is float else kind)
            ):
                raise ValueError(f"{step}.{key} = {value!r}")
    return json.dumps(raw, sort_keys=True)


def _to_step_list(raw: Any) -> str:
    names = [name.strip() for name in str(raw).split(",") if name.strip()]
    unknown = [name for name in names if name not in STEP_NAMES]
    if unknown:
        raise ValueError(f"unknown step {', '.join(unknown)}")
    return ",".join(names)


def _to_rate_limits(raw: Any) -> str:
    """Rate limits in the limits library's notation ("10/second;300/minute"), checked; "" for none."""
    text = str(raw).strip()
    if text:
        parse_many(text)  # raises ValueError naming what it cannot read
    return text


def _to_webhook_secret(raw: Any) -> str:
    """A Standard Webhooks secret: whsec_ and base64 of at least 24 bytes; "" for no webhooks."""
    text = str(raw).strip()
    if text:
        body = text.removeprefix("whsec_").rstrip("=")
        try:
            key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        except ValueError:
            raise ValueError("not whsec_ followed by base64") from None
        if len(key) < 24:
            raise ValueError("the key is shorter than 24 bytes")
    return text


def _to_webhook_events(raw: Any) -> str:
    names = [name.strip() for name in str(raw).split(",") if name.strip()]
    unknown = [name for name in names if name not in WEBHOOK_EVENTS]
    if unknown or not names:
        raise ValueError(f"events are some of {', '.join(WEBHOOK_EVENTS)}")
    return ",".join(names)


def _to_seconds(raw: Any) -> float:
    """A duration: a number of seconds, or a number with a unit s, m, h or d ("7d", "90m")."""
    if isinstance(raw, bool):
        raise ValueError(raw)
    if isinstance(raw, int | float):
        return float(raw)
    text = str(raw).strip().lower()
    unit = DURATION_UNITS.get(text[-1:])
    return float(text[:-1]) * unit if unit else float(text)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every option the service reads. Built once at start and passed in; nothing else reads the env."""

    host: str = option("127.0.0.1", "address to listen on (0.0.0.0 for every interface)")
    port: int = option(8080, "port to listen on", minimum=0)
    workers: int = option(
        1, "processes serving the port together (more than 1 needs store=redis, which they share)", minimum=1
    )
    event_loop: str = option(
        "auto",
        "the asyncio event loop: uvloop when it is installed (auto), always asyncio's own (asyncio), "
        "or uvloop (refusing to start without it)",
        choices=("auto", "asyncio", "uvloop"),
    )
    request_timeout: float = option(
        60.0, "seconds a client may take to send a request or sit idle between requests", minimum=0.1
    )
    cors_origins: str = option("*", "comma-separated origins allowed by CORS, or * for any")
    max_body_size: int = option(65536, "largest request body accepted, in bytes (413 above)", minimum=64)
    api_keys_file: str = option(
        "",
        "file of API keys, one per line: NAME SHA256-HEX-OF-KEY [admin] (make one with "
        "`python -m conf.keys NAME`); with keys, every API request needs Authorization: Bearer",
    )
    api_keys: str = option(
        "",
        "API keys given in the environment (ORCH_API_KEYS): comma-separated NAME:KEY or NAME:KEY:admin; "
        "never logged",
        secret=True,
    )
    allow_anonymous: bool = option(
        False, "allow listening on a non-loopback address with no API keys (anyone who reaches it may use it)"
    )
    allowed_hosts: str = option(
        "localhost,127.0.0.1,[::1]",
        "Host header values accepted when no API keys are configured (against DNS rebinding), or *",
    )
    token_secret: str = option(
        "",
        "secret that signs stream tokens (share it between instances); empty: a random one per process",
        secret=True,
    )
    stream_token_ttl: float = option(
        3600.0,
        "seconds a session's stream token (?token= for EventSource) stays valid",
        minimum=1,
        parse=_to_seconds,
    )
    rate_limit: str = option(
        "50/second;3000/minute",
        "requests one API key (or client address) may make, in the limits library's notation (counted "
        "across all instances on store=redis); empty: none",
        parse=_to_rate_limits,
    )
    create_rate_limit: str = option(
        "10/second;300/minute",
        "sessions one API key (or client address) may create; empty: none",
        parse=_to_rate_limits,
    )
    pending_ttl: float = option(
        3600.0,
        "how long a session nobody runs is kept (seconds, or 1h, 30m)",
        minimum=1,
        parse=_to_seconds,
    )
    max_pending_per_client: int = option(
        100, "pending sessions one API key (or client address) may hold at once", minimum=1
    )
    max_connections: int = option(
        4000, "open connections at once; more are refused at once (kept below the file limit)", minimum=16
    )
    max_topic_length: int = option(500, "longest topic accepted, in characters", minimum=1)
    store: str = option(
        "sqlite",
        "where sessions are kept: sqlite (one file), memory, or redis (shared by many instances)",
        choices=("sqlite", "memory", "redis"),
    )
    db_path: str = option("data/orchestrator.db", "the SQLite database file (relative to the project)")
    redis_url: str = option(
        "redis://127.0.0.1:6379/0",
        "the Redis of store=redis: redis://[user:password@]host:port/db, rediss:// for TLS, or "
        "unix:///path/redis.sock?db=0 (set a password as ORCH_REDIS_URL; never shown with it)",
        secret=True,
    )
    redis_prefix: str = option(
        "orch:", "prefix of every key the service keeps in Redis (services sharing one Redis need their own)"
    )
    instance_id: str = option(
        "", "this instance's name among those sharing the Redis store; empty: <hostname>-<pid>"
    )
    lease_time: float = option(
        10.0,
        "seconds a run's lease lasts without renewal; once it lapses another instance takes the run over",
        minimum=0.1,
        parse=_to_seconds,
    )
    resume_on_start: bool = option(True, "continue sessions a crash or a restart interrupted")
    retention: float = option(
        7 * 86400.0,
        "how long finished sessions are kept (seconds, or 7d, 12h, 30m)",
        minimum=1,
        parse=_to_seconds,
    )
    max_sessions: int = option(100000, "most sessions kept; the oldest finished ones go first", minimum=1)
    prune_interval: float = option(600.0, "seconds between retention sweeps", minimum=1)
    commit_window: float = option(
        0.002, "seconds the SQLite writer waits to group more writes into one commit", minimum=0
    )
    provider: str = option(
        "builtin",
        "where lesson text comes from: builtin (offline templates) or openai (any OpenAI-compatible server)",
        choices=("builtin", "openai"),
    )
    llm_base_url: str = option("https://api.openai.com/v1", "OpenAI-compatible API base URL (ends in /v1)")
    llm_model: str = option("gpt-4o-mini", "chat model name")
    llm_api_key: str = option("", "API key (set it as ORCH_LLM_API_KEY; never logged)", secret=True)
    llm_temperature: float = option(0.7, "sampling temperature", minimum=0)
    llm_max_tokens: int = option(
        1024, "most tokens one prose answer (a section, the summary) may have", minimum=1
    )
    llm_json_max_tokens: int = option(
        1536, "most tokens one structured (JSON) answer may have; past it the step fails", minimum=1
    )
    llm_step_options: str = option(
        "",
        "per-step overrides of model, temperature, max_tokens and json_max_tokens, as JSON or a "
        'conf-file table: {"create-content": {"max_tokens": 4096}}',
        parse=_to_step_options,
    )
    llm_json_mode: str = option(
        "json_schema",
        "how structured answers are asked for: json_schema (OpenAI, vLLM, Ollama), "
        "json_object (llama.cpp's server) or prompt (schema in the prompt only)",
        choices=("json_schema", "json_object", "prompt"),
    )
    llm_idle_timeout: float = option(
        60.0,
        "seconds a streaming answer may go without a token (pings do not count), the first one included",
        minimum=0.01,
    )
    llm_prompt_price: float = option(
        0.0, "price per million prompt tokens, for the cost figure (0: no cost)", minimum=0
    )
    llm_completion_price: float = option(0.0, "price per million completion tokens", minimum=0)
    token_budget: int = option(0, "most tokens one session may use (0: no limit)", minimum=0)
    retries: int = option(
        3,
        "times a model call is retried after a transient failure (429, 5xx, network, idle, cut short)",
        minimum=0,
    )
    retry_initial_delay: float = option(
        1.0, "seconds before the first retry; doubles each time, with jitter", minimum=0
    )
    retry_max_delay: float = option(30.0, "longest wait between retries, in seconds", minimum=0)
    optional_steps: str = option(
        "generate-images",
        "comma-separated steps whose failure leaves the lesson partial instead of failed",
        parse=_to_step_list,
    )
    prompts_dir: str = option("conf/prompts", "folder of the prompt files (relative to the project)")
    image_provider: str = option(
        "diagram",
        "diagram (SVG drawn locally) or openai (also an illustration from /v1/images/generations)",
        choices=("diagram", "openai"),
    )
    image_model: str = option("gpt-image-1", "image model, with image_provider=openai")
    image_size: str = option("1024x1024", "image size, with image_provider=openai")
    pace: float = option(
        0.0, "characters per second the builtin provider streams at (0 = as fast as possible)", minimum=0
    )
    max_running: int = option(
        32,
        "sessions that run at once (in this process, or across all instances on store=redis); more "
        "wait in a FIFO queue (0: no limit)",
        minimum=0,
    )
    max_queued: int = option(
        1000, "sessions that may wait for a run slot; a start beyond it gets 503 with Retry-After", minimum=0
    )
    step_timeout: float = option(120.0, "seconds one step may run before it fails", minimum=0.01)
    shutdown_timeout: float = option(
        30.0, "seconds running sessions get to finish on SIGTERM before they are interrupted", minimum=0
    )
    heartbeat_interval: float = option(
        15.0,
        "seconds a stream may be silent before it gets an SSE heartbeat comment (one timer checks "
        "every stream each half interval, so it comes within 1 to 1.5 intervals)",
        minimum=0.01,
    )
    sse_retry: int = option(3000, "reconnect delay sent to EventSource clients, in milliseconds", minimum=0)
    poll_max_wait: float = option(
        30.0,
        "longest a long poll (GET /api/sessions/{id}/events) is held waiting for an event, in seconds; "
        "a longer wait= is cut to it (keep it below the read timeout of proxies in front; 0: never hold)",
        minimum=0,
    )
    subscriber_buffer: int = option(
        2000, "events one stream may fall behind before it is cut off (it can resume)", minimum=1
    )
    replay_cache: int = option(
        32,
        "MiB of the latest events kept in memory on the SQLite store, so streams that attach or "
        "resume are replayed without reading the database (0: none; other stores read their own)",
        minimum=0,
    )
    flush_timeout: float = option(
        30.0, "seconds a stream may take to accept a write before it is cut off", minimum=0.01
    )
    sweep_interval: float = option(10.0, "seconds between sweeps for closed streams", minimum=0.01)
    webhook_secret: str = option(
        "",
        "the Standard Webhooks secret (whsec_ and base64; make one with `python -m conf.keys --webhook`) "
        "that signs every webhook; empty: no webhooks are sent",
        secret=True,
        parse=_to_webhook_secret,
    )
    webhook_url: str = option("", "a URL that gets every session's webhooks, besides each session's own")
    webhook_events: str = option(
        "session.completed,session.failed,session.cancelled",
        "what webhook_url is sent (add step.completed, step.failed for step events)",
        parse=_to_webhook_events,
    )
    webhook_timeout: float = option(10.0, "seconds one webhook delivery attempt may take", minimum=0.1)
    webhook_retry_for: float = option(
        86400.0,
        "how long a webhook is retried (with backoff up to 1 h between tries) before it is given up on (24h)",
        minimum=1,
        parse=_to_seconds,
    )
    webhook_retry_delay: float = option(
        5.0, "seconds before a webhook's first retry; doubles each time (with jitter) up to 1 h", minimum=0.01
    )
    webhook_allow_private: bool = option(
        False, "allow webhooks to private, loopback and link-local addresses (only public ones otherwise)"
    )
    public_url: str = option(
        "", "the service's address as clients know it (https://lessons.example.org), for links in webhooks"
    )
    log_level: str = option("info", "log level", choices=("debug", "info", "warning", "error"))
    log_format: str = option(
        "auto",
        "log format: colour on a terminal (auto), text, color or JSON lines",
        choices=("auto", "text", "color", "json"),
    )
    metrics_port: int = option(
        0,
        "a port that serves GET /metrics alone, without API keys, for a Prometheus scraper (0: off; "
        "/metrics on the service's port is always there)",
        minimum=0,
    )
    metrics_host: str = option(
        "127.0.0.1", "address metrics_port listens on; anyone who can reach it reads the metrics"
    )

    @property
    def database(self) -> Path:
        path = Path(self.db_path)
        return path if path.is_absolute() else PROJECT_DIR / path

    @property
    def instance(self) -> str:
        """instance_id, or this process's <hostname>-<pid> (read when asked: a forked worker has its own)."""
        return self.instance_id or f"{socket.gethostname()}-{os.getpid()}"

    @property
    def step_options(self) -> dict[str, dict[str, Any]]:
        return json.loads(self.llm_step_options) if self.llm_step_options else {}

    @property
    def optional_step_names(self) -> frozenset[str]:
        return frozenset(name.strip() for name in self.optional_steps.split(",") if name.strip())

    @property
    def prompts_path(self) -> Path:
        path = Path(self.prompts_dir)
        return path if path.is_absolute() else PROJECT_DIR / path

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        return tuple(o.strip() for o in self.cors_origins.split(",") if o.strip())

    def engine_options(self) -> EngineOptions:
        return EngineOptions(
            step_timeout=self.step_timeout,
            subscriber_buffer=self.subscriber_buffer,
            # The memory store's reads are in memory already; Redis has its own log (of all instances).
            replay_cache_bytes=self.replay_cache * 1024 * 1024 if self.store == "sqlite" else 0,
            retention=self.retention,
            pending_ttl=self.pending_ttl,
            max_sessions=self.max_sessions,
            max_pending_per_client=self.max_pending_per_client,
            max_topic_length=self.max_topic_length,
            max_running=self.max_running,
            max_queued=self.max_queued,
            retry=RetryPolicy(
                retries=self.retries,
                initial_delay=self.retry_initial_delay,
                max_delay=self.retry_max_delay,
            ),
            optional_steps=self.optional_step_names,
            usage=UsagePolicy(
                token_budget=self.token_budget,
                prompt_price=self.llm_prompt_price,
                completion_price=self.llm_completion_price,
            ),
        )

    def webhook_policy(self) -> WebhookPolicy | None:
        """What webhooks sessions cause; None without a webhook_secret (no webhooks at all)."""
        if not self.webhook_secret:
            return None
        events = tuple(self.webhook_events.split(","))
        target = WebhookTarget(self.webhook_url, events) if self.webhook_url else None
        return WebhookPolicy(target, self.public_url)

    def delivery_options(self) -> DeliveryOptions:
        return DeliveryOptions(
            secret=self.webhook_secret,
            timeout=self.webhook_timeout,
            retry_for=self.webhook_retry_for,
            initial_delay=self.webhook_retry_delay,
            max_delay=3600.0,
            allow_private=self.webhook_allow_private,
            poll_interval=1.0,
            user_agent="orchestrator-webhooks",
        )

    def llm_config(self) -> LLMConfig:
        return LLMConfig(
            base_url=self.llm_base_url,
            model=self.llm_model,
            api_key=self.llm_api_key,
            temperature=self.llm_temperature,
            max_tokens=self.llm_max_tokens,
            json_max_tokens=self.llm_json_max_tokens,
            step_options=self.step_options,
            json_mode=self.llm_json_mode,
            idle_timeout=self.llm_idle_timeout,
            total_timeout=self.step_timeout,
            image_model=self.image_model,
            image_size=self.image_size,
        )


def _fields() -> list[dataclasses.Field[Any]]:
    return list(dataclasses.fields(Settings))


def _convert(f: dataclasses.Field[Any], raw: Any, source: str) -> Any:
    """Turn a raw value from a file, the env or the command line into the field's type, or explain."""
    kind = f.type
    assert isinstance(kind, type)  # the module has no `from __future__ import annotations`
    parse: Callable[[Any], Any] = f.metadata["parse"] or (_to_bool if kind is bool else kind)
    try:
        if kind is int and isinstance(raw, float | bool):
            raise ValueError
        value = parse(raw)
    except (TypeError, ValueError) as exc:
        why = f" ({exc})" if f.metadata["parse"] and str(exc) != str(raw) else ""
        shown = repr(raw) if f.repr else "the value"  # a secret (repr=False) is never printed
        raise SettingsError(f"{f.name}: {shown} from {source} is not a valid {kind.__name__}{why}") from None
    choices, minimum = f.metadata["choices"], f.metadata["minimum"]
    if choices and value not in choices:
        raise SettingsError(f"{f.name}: {value!r} from {source} is not one of {', '.join(choices)}")
    if minimum is not None and value < minimum:
        raise SettingsError(f"{f.name}: {value!r} from {source} is below the minimum {minimum}")
    return value


def _argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="server.py",
        description="Orchestrator: turns a topic into a lesson and streams every step over SSE.",
        epilog=f"Each option can also be set as {ENV_PREFIX}<NAME> in the environment or in the conf file.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", metavar="PATH", help=f"conf file (TOML; default {DEFAULT_CONF_FILE})")
    for f in _fields():
        env = ENV_PREFIX + f.name.upper()
        help_text = f"{f.metadata['help']} (default {f.default!r}; env {env})"
        if f.metadata["choices"]:
            help_text += f"; one of {', '.join(f.metadata['choices'])}"
        parser.add_argument(f"--{f.name}", metavar=f.name.upper(), help=help_text)
    return parser


def _read_conf_file(path: Path, explicit: bool) -> dict[str, Any]:
    if not path.exists():
        if explicit:
            raise SettingsError(f"config: conf file {path} does not exist")
        return {}
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"config: cannot read conf file {path}: {exc}") from exc
    known = {f.name for f in _fields()}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SettingsError(f"config: unknown option(s) {', '.join(unknown)} in {path}")
    return data


def load_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from every source. `--help` prints every option and exits."""
    environ = os.environ if environ is None else environ
    args = vars(_argument_parser().parse_args(argv))
    conf_path = args.pop("config", None) or environ.get(ENV_PREFIX + "CONFIG")
    layers: list[tuple[str, Mapping[str, Any]]] = [
        (
            f"conf file {conf_path or DEFAULT_CONF_FILE}",
            _read_conf_file(Path(conf_path or DEFAULT_CONF_FILE), explicit=bool(conf_path)),
        ),
        (
            "the environment",
            {
                f.name: environ[ENV_PREFIX + f.name.upper()]
                for f in _fields()
                if ENV_PREFIX + f.name.upper() in environ
            },
        ),
        ("the command line", args),
    ]
    values: dict[str, Any] = {}
    for source, layer in layers:
        for f in _fields():
            if f.name in layer:
                values[f.name] = _convert(f, layer[f.name], source)
    return Settings(**values)


def settings_for_tests(**overrides: Any) -> Settings:
    """Settings from defaults only (no conf file, no environment), with overrides checked like any other."""
    fields = {f.name: f for f in _fields()}
    return Settings(**{name: _convert(fields[name], value, "overrides") for name, value in overrides.items()})

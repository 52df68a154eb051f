"""docs/openapi.json: a valid OpenAPI 3.1 document, in step with the routes, served at /openapi.json,
and true of a live server, which schemathesis tests operation by operation and through the links.

The live servers are real processes (memory store, pace 0, rate limits off): one without API keys
(anonymous requests), one with a key, so that the authenticated paths are exercised too. Each
operation gets the coverage cases schemathesis derives from the document (boundaries, wrong types,
missing parameters, methods the path does not have) and a bounded number of generated positive and
negative cases, from a fixed seed, plus positive ones about a session the server completed. The
links (create → get, run, stream, result, lessons, cancel, delete, list) run as a state machine. A
failing test lists every distinct failure with a curl command.
"""

from __future__ import annotations

import copy
import json
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import tornado.web
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from tornado.routing import PathMatches

from client.sse import SSEParser
from handlers.openapi import DOCUMENT as SERVED_DOCUMENT
from handlers.openapi import OpenAPIHandler
from store import MemoryStore, SessionStore
from tests.server_process import ServerProcess

DOCUMENT_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
DOCUMENT: dict[str, Any] = json.loads(DOCUMENT_PATH.read_text(encoding="utf-8"))
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
OPERATIONS = [
    f"{method.upper()} {path}"
    for path, item in DOCUMENT["paths"].items()
    for method in METHODS
    if method in item
]
API_KEY = "secret-key-1"
SEED = 20261128
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Fuzzing is bounded so that the file runs in well under a minute on two cores; the coverage cases
# are all run (the negative ones on the anonymous server only).
# "known": positive cases about the server's completed session (every operation but DELETE).
EXAMPLES = {
    "anonymous": {"positive": 10, "negative": 10, "known": 5},
    "api-key": {"positive": 5, "negative": 5, "known": 3},
}
STATEFUL_EXAMPLES = {"anonymous": 12, "api-key": 6}
SERVER_ARGS = (
    "--rate_limit=",  # fuzzing must not be answered 429
    "--create_rate_limit=",
    "--max_pending_per_client=100000",
    "--request_timeout=20",
    "--poll_max_wait=0.5",  # a poll of a session with nothing new holds at most this long
)
LOG_PROBLEM = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")
KINDS = ("anonymous", "api-key")
# Server bugs these tests found, by test id. Each test still asserts everything; the mark says it is
# expected to fail until the bug is fixed, and is strict so that the fix fails the run until the
# entry is removed here.
# -- the document -------------------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1():
    assert DOCUMENT["openapi"] == "3.1.0"
    validate(DOCUMENT, cls=OpenAPIV31SpecValidator)


def test_the_handler_serves_the_file_as_it_is():
    assert json.loads(SERVED_DOCUMENT) == DOCUMENT


def test_every_error_is_the_error_shape_and_every_api_operation_needs_the_key():
    responses = DOCUMENT["components"]["responses"]
    for name, response in responses.items():
        if name != "NoContent":
            assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert set(DOCUMENT["components"]["schemas"]["Error"]["required"]) == {"error", "status"}
    for label in OPERATIONS:
        method, path = label.split(" ", 1)
        operation = DOCUMENT["paths"][path][method.lower()]
        codes = set(operation["responses"])
        assert "500" in codes and "403" in codes, label
        for code, response in operation["responses"].items():
            if code >= "400" and method != "HEAD":
                assert response["$ref"].startswith("#/components/responses/"), (label, code)
        if method == "OPTIONS":
            assert operation["security"] == [] and "204" in codes, label
        elif path.startswith("/api/"):
            assert {"bearerAuth": []} in operation["security"], label
            assert {"400", "401", "413", "429", "503"} <= codes, label
    assert {path for path, item in DOCUMENT["paths"].items() if "options" in item} == set(DOCUMENT["paths"])
    stream = DOCUMENT["paths"]["/api/sessions/{id}/run"]["get"]
    assert {"streamToken": []} in stream["security"]
    token = DOCUMENT["components"]["securitySchemes"]["streamToken"]
    assert (token["type"], token["in"], token["name"]) == ("apiKey", "query", "token")


# -- the document and the routes ----------------------------------------------------------------


@pytest.fixture
def store() -> SessionStore:
    """The routes do not depend on the store: one is enough here."""
    return MemoryStore()


def _routes(app: tornado.web.Application) -> dict[str, type]:
    """Each route of the app as a templated path (`/api/sessions/{}/run`), with its handler class."""
    routes = {}
    for rule in app.wildcard_router.rules:
        assert isinstance(rule.matcher, PathMatches), rule
        pattern = rule.matcher.regex.pattern.removesuffix("$")
        pattern = pattern.replace("()", "")  # `/()`: the page, an empty capture
        template = re.sub(r"\((?:[^()\\]|\\.)*\)", "{}", pattern).replace("\\", "")
        routes[template] = rule.target
    return routes


def _template(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def test_every_route_is_documented_and_every_documented_path_is_routed(app):
    routed = set(_routes(app))
    documented = {_template(path) for path in DOCUMENT["paths"]}
    assert sorted(routed - documented) == [], "routes missing from docs/openapi.json"
    assert sorted(documented - routed) == [], "documented paths that server.make_app does not route"


def test_every_documented_method_is_implemented_and_every_implemented_one_documented(app):
    unimplemented = tornado.web.RequestHandler.get  # every method a handler does not define is this one
    documented = {
        _template(path): {m.upper() for m in item if m in METHODS} for path, item in DOCUMENT["paths"].items()
    }
    mismatches = {}
    for template, handler in _routes(app).items():
        implemented = {
            method
            for method in handler.SUPPORTED_METHODS
            if getattr(handler, method.lower(), unimplemented) is not unimplemented
        }
        if template in documented and implemented != documented[template]:
            mismatches[template] = {
                "implemented, not documented": sorted(implemented - documented[template]),
                "documented, not implemented": sorted(documented[template] - implemented),
            }
    assert mismatches == {}


@pytest.mark.gen_test
async def test_openapi_handler_serves_the_document_as_json(http_client, base_url, app):
    # Routed here whether or not server.py routes it yet; the route itself is checked above.
    app.add_handlers(r".*", [(r"/openapi\.json", OpenAPIHandler)])
    response = await http_client.fetch(base_url + "/openapi.json", raise_error=False)
    assert response.code == 200
    assert response.headers["Content-Type"].split(";")[0] == "application/json"
    assert json.loads(response.body) == DOCUMENT


# -- live servers ---------------------------------------------------------------------------------


@dataclass
class LiveServer:
    """A server process, the headers every request to it carries, the document bound to its URL,
    and a session it completed (its id and one of its images), for requests that find something."""

    kind: str
    process: ServerProcess
    headers: dict[str, str]
    schema: Any
    completed: dict[str, str] = field(default_factory=dict)
    log_read: int = 0

    def new_log_problems(self) -> list[str]:
        """ERROR lines and tracebacks the server logged since the last call."""
        lines = self.process.lines[self.log_read :]
        self.log_read += len(lines)
        return [line.rstrip() for line in lines if LOG_PROBLEM.search(line)]


def _start(kind: str) -> LiveServer:
    env = {"ORCH_API_KEYS": f"tester:{API_KEY}"} if kind == "api-key" else {}
    headers = {"Authorization": f"Bearer {API_KEY}"} if kind == "api-key" else {}
    process = ServerProcess(*SERVER_ARGS, env=env)
    try:
        created = requests.post(
            process.url + "/api/sessions", json={"topic": "photosynthesis"}, headers=headers, timeout=20
        )
        assert created.status_code == 201, created.text
        session_id = created.json()["id"]
        run = requests.post(process.url + f"/api/sessions/{session_id}/run", headers=headers, timeout=60)
        assert run.status_code == 200 and b'"type":"final"' in run.content, run.text[-500:]
        result = requests.get(process.url + f"/api/sessions/{session_id}/result", headers=headers, timeout=20)
        image = next(iter(result.json()["images"].values())).rsplit("/", 1)[-1]
    except BaseException:
        process.kill()
        raise
    schema = schemathesis.openapi.from_dict(copy.deepcopy(DOCUMENT), config=schemathesis.Config())
    schema.config.update(base_url=process.url)
    return LiveServer(kind, process, headers, schema, {"id": session_id, "name": image})


@pytest.fixture(scope="module")
def live_server() -> Iterator[Callable[[str], LiveServer]]:
    """Started on first use, one per kind, for the whole module."""
    servers: dict[str, LiveServer] = {}

    def get(kind: str) -> LiveServer:
        if kind not in servers:
            servers[kind] = _start(kind)
        return servers[kind]

    yield get
    for server in servers.values():
        try:
            server.process.terminate(timeout=30)
        finally:
            server.process.kill()  # only if it did not stop by itself


@dataclass
class Findings:
    """Distinct failures of one test, each with one request that shows it."""

    server: LiveServer
    seen: dict[tuple[str, ...], str] = field(default_factory=dict)

    def add(self, key: tuple[str, ...], case: Case, what: str, response: Any = None) -> None:
        if key in self.seen:
            return
        answer = ""
        if response is not None:
            body = response.content[:300].decode("utf-8", "replace")
            answer = f"\n    answered {response.status_code} {_header(response, 'content-type')}: {body!r}"
        curl = case.as_curl_command(headers=self.server.headers)
        self.seen[key] = f"- {what}{answer}\n    {curl}"

    def run(self, case: Case) -> None:
        """Send the case; record what the checks (or, for a method the path lacks, the 405 rule) say."""
        try:
            response = case.call(headers=self.server.headers, timeout=20)
        except requests.RequestException as exc:
            self.add((case.method, type(exc).__name__), case, f"no answer: {exc!r}")
            return
        if case.method != case.operation.method.upper():
            self._check_unexpected_method(case, response)
            return
        try:
            case.validate_response(response, checks=CHECKS, headers=self.server.headers)
        except (Failure, FailureGroup) as exc:
            failures = exc.exceptions if isinstance(exc, FailureGroup) else (exc,)
            for failure in failures:
                first_line = failure.message.splitlines()[0] if failure.message else ""
                key = (case.method, type(failure).__name__, str(response.status_code), first_line[:40])
                self.add(key, case, f"{failure.title}: {_shortened(failure.message.strip())}", response)

    def _check_unexpected_method(self, case: Case, response: Any) -> None:
        """A method the path does not have is a 405, in the JSON error shape."""
        error = _json_error(response)
        if response.status_code != 405 or error is None:
            key = (case.method, "wrong method", str(response.status_code), str(error is None))
            self.add(key, case, f"{case.method} is not documented: wanted a JSON 405", response)

    def report(self) -> str:
        return "\n".join(self.seen.values())


def _shortened(text: str, limit: int = 1200) -> str:
    return text if len(text) <= limit else text[:limit] + " …"


def _header(response: Any, name: str) -> str:
    """A header of a schemathesis response (lower-case names, lists of values) or a requests one."""
    value = response.headers.get(name.lower())
    if isinstance(value, list):
        return value[0] if value else ""
    return value or ""


def _json_error(response: Any) -> dict[str, Any] | None:
    """The body if it is the documented error shape, else None."""
    if not _header(response, "content-type").startswith("application/json"):
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    ok = (
        isinstance(body, dict)
        and isinstance(body.get("error"), str)
        and body.get("status") == response.status_code
    )
    return body if ok else None


FUZZ_SETTINGS = settings(
    database=None,
    deadline=None,
    derandomize=False,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: every failure is kept, not minimised
    suppress_health_check=list(HealthCheck),
    report_multiple_bugs=False,
)


@pytest.mark.parametrize(
    ("kind", "label"),
    [pytest.param(kind, label, id=f"{kind}-{label}") for kind in KINDS for label in OPERATIONS],
)
def test_the_live_server_answers_every_operation_as_documented(live_server, kind, label):
    server = live_server(kind)
    operation = server.schema.find_operation_by_label(label)
    assert operation is not None, label
    findings = Findings(server)
    server.new_log_problems()  # what earlier tests left in the log is theirs

    generation = server.schema.config.generation_for(operation=operation, phase="coverage")
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    # The key changes who may ask, not what is bad input: the negative coverage runs once, without.
    coverage_modes = modes if kind == "anonymous" else [GenerationMode.POSITIVE]
    for case in server.schema.iter_coverage_cases(
        operation, generation_modes=coverage_modes, generation_config=generation
    ):
        findings.run(case)

    strategies = {mode.value: operation.as_strategy(generation_mode=mode) for mode in modes}
    known = {
        p.name: server.completed[p.name] for p in operation.path_parameters if p.name in server.completed
    }
    if known and operation.method != "delete":  # the completed session is kept for every test
        strategies["known"] = operation.as_strategy(path_parameters=known)
    for name, strategy in strategies.items():

        @seed(SEED)
        @settings(FUZZ_SETTINGS, max_examples=EXAMPLES[kind][name])
        @given(case=strategy)
        def fuzz(case: Case) -> None:
            findings.run(case)

        try:
            fuzz()
        except Unsatisfiable:
            # Nothing of the operation can be made invalid (no parameters, or only free strings).
            assert name == "negative", label

    logged = server.new_log_problems()
    assert not findings.seen and not logged, f"{label} on the {kind} server:\n{findings.report()}" + "".join(
        f"\n  logged: {line}" for line in logged
    )


@pytest.mark.parametrize("kind", KINDS)
def test_the_live_server_follows_the_links_as_documented(live_server, kind):
    """Create → get, run, stream, result, lessons, cancel, delete, list, with the id from the 201 body."""
    server = live_server(kind)
    server.new_log_problems()
    machine = server.schema.as_state_machine()

    class Checked(machine):
        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"headers": server.headers, "timeout": 20}

        def validate_response(
            self, response: Any, case: Case, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(response, checks=CHECKS, headers=server.headers, transport_kwargs=kwargs)

    Checked.run(
        settings=settings(
            FUZZ_SETTINGS,
            derandomize=True,  # a state machine takes no @seed: its seed is fixed this way
            max_examples=STATEFUL_EXAMPLES[kind],
            stateful_step_count=6,
        )
    )
    logged = server.new_log_problems()
    assert not logged, "the server logged:\n" + "\n".join(logged)


# -- what schemathesis cannot see: the events inside the stream, the token, the served document -----

_RESOURCE = Resource.from_contents(DOCUMENT, default_specification=DRAFT202012)
_REGISTRY = Registry().with_resource("urn:orchestrator:openapi", _RESOURCE)


def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": f"urn:orchestrator:openapi#/components/schemas/{name}"},
        registry=_REGISTRY,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def _problems(name: str, value: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator(name).iter_errors(value)
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_a_whole_run_read_from_stream_url_sends_only_documented_events(live_server, kind):
    """The stream_url alone (its token, with a key) streams the run; every event is a documented Event."""
    server = live_server(kind)
    created = requests.post(
        server.process.url + "/api/sessions",
        json={"topic": "photosynthesis"},
        headers=server.headers,
        timeout=20,
    )
    assert created.status_code == 201, created.text
    assert _problems("CreatedSession", created.json()) == []
    stream_url = created.json()["stream_url"]
    if kind == "api-key":
        assert "token=" in stream_url
        anonymous = requests.get(server.process.url + stream_url.split("?")[0], timeout=20)
        assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        assert _json_error(anonymous) is not None

    parser, events = SSEParser(), []
    with requests.get(server.process.url + stream_url, stream=True, timeout=30) as response:
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for chunk in response.iter_content(chunk_size=None):
            events += parser.feed(chunk)
    payloads = [json.loads(event.data) for event in events]
    assert [p["type"] for p in payloads][:2] == ["connected", "step-start"]
    assert payloads[-1]["type"] == "final"
    problems = {
        f"{p['type']} #{i}: {problem}" for i, p in enumerate(payloads) for problem in _problems("Event", p)
    }
    assert sorted(problems) == []

    result = requests.get(
        server.process.url + f"/api/sessions/{created.json()['id']}/result",
        headers=server.headers,
        timeout=20,
    )
    assert result.status_code == 200
    assert _problems("SessionResult", result.json()) == []
    assert server.new_log_problems() == []


MALFORMED_REQUESTS = [
    b"GET /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: no-cache\r\n\r\n",
    b"GET /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"GET /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"GET /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon here\r\n\r\n",
]


def test_a_request_the_http_parser_rejects_still_gets_a_json_error(live_server):
    server = live_server("anonymous")
    answers = {}
    for raw in MALFORMED_REQUESTS:
        with socket.create_connection(("127.0.0.1", server.process.port), timeout=10) as connection:
            connection.sendall(raw)
            answer = b""
            while chunk := connection.recv(65536):  # the server closes the connection after it
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        answers[raw.split(b"\r\n")[2].decode()] = (head.split(b"\r\n")[0].decode(), body.decode())
    wrong = {
        header: answer
        for header, answer in answers.items()
        if not answer[0].startswith("HTTP/1.1 400") or _loads(answer[1]).get("status") != 400
    }
    assert wrong == {}


def _loads(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def test_the_live_server_serves_this_document_at_openapi_json(live_server):
    server = live_server("api-key")
    response = requests.get(server.process.url + "/openapi.json", timeout=20)  # no key: it is public
    assert response.status_code == 200
    assert response.headers["Content-Type"].split(";")[0] == "application/json"
    assert response.json() == DOCUMENT

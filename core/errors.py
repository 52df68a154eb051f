"""The service's exception classes.

    OrchestratorError
     ├── ConfigError           the service cannot start with this configuration (exit 2)
     │    ├── SettingsError    an option has an unusable value; the message names the option
     │    ├── PromptError      a prompt file is missing or malformed; the message names the file
     │    └── ContentError     a file of the builtin provider's text is missing or malformed
     ├── InvalidInput          bad input from a client (HTTP 400)
     │    ├── PayloadTooLarge  the request body is over max_body_size (413)
     │    └── NotJSON          a request body that is not application/json (415)
     ├── Unauthorized          no valid API key (401)
     ├── Forbidden             an origin or Host this service does not serve (403)
     ├── Throttled             over a rate limit or the pending-session cap (429); `retry_after`
     ├── NotFound              nothing by that name (404)
     │    ├── SessionNotFound  no session with that id
     │    └── ImageNotFound    the session has no image by that name
     ├── ResultNotReady        the session has no result yet (400)
     ├── SessionConflict       the session is not in a state that allows this (409)
     ├── Unavailable           the service cannot do this right now (503)
     │    ├── ShuttingDown     it is draining and takes no new work
     │    ├── StoreUnavailable the store cannot be opened, read or written
     │    │    ├── NotRecorded a state change the store did not take
     │    │    └── RunTakenOver this instance lost the run's lease: another instance runs it now
     │    ├── TooManySessions  max_sessions is reached and nothing finished can make room
     │    └── QueueFull        max_running sessions run and max_queued wait; `retry_after`
     ├── ProviderError         the model server failed; a `transient` one is worth retrying
     └── StepFailed            a step of the pipeline failed; `step` names it
          ├── StepTimedOut     the step ran past its timeout
          └── BudgetExceeded   the session used up its token budget

ConfigError stops the start with a message. Handlers turn InvalidInput through Unavailable into
JSON error answers, through one function (handlers.base.status_for). ProviderError and StepFailed
never leave the engine: it retries transient provider errors, then records the failure on the
session and sends it as `step-error` and `error` events.
"""


class OrchestratorError(Exception):
    """Base of every error the service raises on purpose; the message is meant for the user."""


class ConfigError(OrchestratorError, ValueError):
    pass


class SettingsError(ConfigError):
    pass


class PromptError(ConfigError):
    pass


class ContentError(ConfigError):
    pass


class InvalidInput(OrchestratorError):
    pass


class PayloadTooLarge(InvalidInput):
    pass


class NotJSON(InvalidInput):
    pass


class Unauthorized(OrchestratorError):
    pass


class Forbidden(OrchestratorError):
    pass


class Throttled(OrchestratorError):
    def __init__(
        self, message: str, retry_after: float | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.headers = headers or {}  # e.g. RateLimit and RateLimit-Policy


class NotFound(OrchestratorError):
    pass


class PendingLimitReached(OrchestratorError):
    """A store refused a new session: its owner already holds `pending` sessions never run."""

    def __init__(self, pending: int) -> None:
        super().__init__(f"the owner already has {pending} pending sessions")
        self.pending = pending


class SessionNotFound(NotFound):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id} not found")


class ImageNotFound(NotFound):
    def __init__(self, session_id: str, name: str) -> None:
        super().__init__(f"session {session_id} has no image {name}")


class ResultNotReady(OrchestratorError):
    pass


class SessionConflict(OrchestratorError):
    pass


class Unavailable(OrchestratorError):
    pass


class ShuttingDown(Unavailable):
    pass


class StoreUnavailable(Unavailable):
    # The message names the file, for the log; a client is told only this.
    public = "the session store cannot be used right now; try again later"


class NotRecorded(StoreUnavailable):
    def __init__(self, change: str, cause: BaseException) -> None:
        super().__init__(f"the {change} could not be recorded: {cause}")
        self.public = f"the {change} could not be stored, so it did not happen; try again later"


class RunTakenOver(StoreUnavailable):
    """A write for a session whose run lease this instance no longer holds (it was paused or cut
    off past the lease time, and another instance took the run over)."""

    public = "another instance runs this session now; reconnect to follow it"


class TooManySessions(Unavailable):
    pass


class QueueFull(Unavailable):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StepFailed(OrchestratorError):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


class StepTimedOut(StepFailed):
    pass


class BudgetExceeded(StepFailed):
    pass


class ProviderError(OrchestratorError):
    """A call to the model server failed. `retry_after` is the wait in seconds the server asked for."""

    def __init__(self, message: str, *, transient: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after

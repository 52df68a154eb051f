"""The service's exception classes.

    OrchestratorError
     ├── InvalidInput          bad input from a client (HTTP 400)
     ├── NotFound              nothing by that name (404)
     │    ├── SessionNotFound  no session with that id
     │    └── ImageNotFound    the session has no image by that name
     ├── ResultNotReady        the session has no result yet (400)
     ├── SessionConflict       the session is not in a state that allows this (409)
     ├── Unavailable           the service cannot do this right now (503)
     │    ├── ShuttingDown     it is draining and takes no new work
     │    ├── StoreUnavailable the store cannot be opened, read or written
     │    └── TooManySessions  max_sessions is reached and nothing finished can make room
     ├── ProviderError         the model server failed; a `transient` one is worth retrying
     └── StepFailed            a step of the pipeline failed; `step` names it
          ├── StepTimedOut     the step ran past its timeout
          └── BudgetExceeded   the session used up its token budget

Handlers turn the first group into JSON error answers. ProviderError and StepFailed never leave the
engine: it retries transient provider errors, then records the failure on the session and sends it
as `step-error` and `error` events.
"""


class OrchestratorError(Exception):
    """Base of every error the service raises on purpose; the message is meant for the user."""


class InvalidInput(OrchestratorError):
    pass


class NotFound(OrchestratorError):
    pass


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
    pass


class TooManySessions(Unavailable):
    pass


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

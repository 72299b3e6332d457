"""Domain errors. The HTTP layer maps each to a status code in one place (`agentpool.http`)."""

from __future__ import annotations

from pydantic import ValidationError


class AgentpoolError(Exception):
    """Base error: `code` is the machine-readable error code sent to clients."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequestError(AgentpoolError):
    status = 400
    code = "invalid_request"


class UnauthorizedError(AgentpoolError):
    status = 401
    code = "unauthorized"


class ForbiddenError(AgentpoolError):
    status = 403
    code = "forbidden"


class NotFoundError(AgentpoolError):
    status = 404
    code = "not_found"


class UnsupportedMediaTypeError(AgentpoolError):
    status = 415
    code = "unsupported_media_type"


class ThrottledError(AgentpoolError):
    status = 429
    code = "throttled"

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class UpstreamError(AgentpoolError):
    """The agent, the model or a tool failed. The client sees 502 with the request id."""

    status = 502
    code = "upstream_failed"


def first_problem(error: ValidationError) -> str:
    """Return `Invalid <field>: <reason>.` for the first error of a pydantic validation."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "body"
    message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
    return f"Invalid {field}: {message}."

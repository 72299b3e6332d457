"""API Gateway proxy responses, and the one place where domain errors become HTTP statuses."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from agentpool.errors import AgentpoolError, ThrottledError, UnsupportedMediaTypeError

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps(body, separators=(",", ":"), default=str),
    }


def error_response(error: AgentpoolError, request_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if request_id:
        body["requestId"] = request_id
    headers = {}
    if isinstance(error, ThrottledError):
        headers["Retry-After"] = str(error.retry_after_seconds)
    return json_response(error.status, {"error": body}, headers)


def request_id_of(event: dict[str, Any]) -> str | None:
    request_id = (event.get("requestContext") or {}).get("requestId")
    return request_id if isinstance(request_id, str) else None


def require_json_body(event: dict[str, Any]) -> None:
    """Raise UnsupportedMediaTypeError when the request names a media type other than JSON.

    A request without Content-Type is read as JSON, as most HTTP clients send one.
    """
    headers = {str(name).lower(): value for name, value in (event.get("headers") or {}).items()}
    content_type = str(headers.get("content-type") or "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaTypeError(
            f"Content-Type {media_type} is not supported; send JSON as application/json."
        )


def api_handler(func: Handler) -> Handler:
    """Map domain errors to JSON error responses; any other exception becomes a logged 500."""

    @functools.wraps(func)
    def wrapper(event: dict[str, Any], context: Any) -> dict[str, Any]:
        request_id = request_id_of(event)
        try:
            return func(event, context)
        except AgentpoolError as error:
            level = logging.ERROR if error.status >= 500 else logging.INFO
            logger.log(
                level,
                "request rejected",
                extra={"status": error.status, "code": error.code, "request_id": request_id},
            )
            return error_response(error, request_id)
        except Exception:
            logger.exception("unhandled error", extra={"request_id": request_id})
            return error_response(
                AgentpoolError("Internal error; retry later or quote the request id."), request_id
            )

    return wrapper

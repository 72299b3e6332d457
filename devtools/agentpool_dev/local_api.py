"""The local API: serves the template's API routes on 127.0.0.1 as API Gateway would.

It checks the ID token like the REST API's Cognito user pool authorizer (signature from the
pool's JWKS, issuer, audience, expiry, token_use), builds the same proxy event with the
verified claims in `requestContext.authorizer.claims`, and runs the route's function.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from agentpool.tokens import CognitoJwtVerifier, TokenError
from agentpool_dev.lambda_runner import FunctionError
from agentpool_dev.template import ApiRoute

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit

InvokeFunction = Callable[[str, dict[str, Any]], Any]


class _ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 resets connections under a burst of parallel clients.
    request_queue_size = 128


class LocalApi:
    def __init__(
        self,
        routes: list[ApiRoute],
        verifier: CognitoJwtVerifier,
        invoke: InvokeFunction,
        stage: str,
        gateway_responses: dict[str, str],
        gateway_statuses: dict[str, int] | None = None,
        host: str = "127.0.0.1",
        port: int = 3000,
    ) -> None:
        self.routes = routes
        self.verifier = verifier
        self.invoke = invoke
        self.stage = stage
        self.gateway_responses = gateway_responses
        self.gateway_statuses = gateway_statuses or {}
        self._server = _ApiServer((host, port), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/{self.stage}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def match(self, method: str, path: str) -> tuple[ApiRoute, dict[str, str]] | None:
        for route in self.routes:
            found = route.pattern.match(path)
            if found and route.method in (method, "ANY"):
                return route, found.groupdict()
        return None


def _handler_for(api: LocalApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "agentpool-local-api"

        def log_message(self, format: str, *args: Any) -> None:
            # Request lines carry no secrets, but the default writes to stderr per request.
            logger.debug("local api request", extra={"line": format % args})

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def do_PUT(self) -> None:
            self._handle()

        def do_DELETE(self) -> None:
            self._handle()

        def _send(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
            encoded = body.encode()
            self.send_response(status)
            for name, value in (headers or {"Content-Type": "application/json"}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(encoded)))
            self.end_headers()
            self.wfile.write(encoded)

        def _gateway_error(self, kind: str, status: int, fallback: str, request_id: str) -> None:
            # API Gateway fills $context variables in gateway response templates.
            body = api.gateway_responses.get(kind, fallback)
            status = api.gateway_statuses.get(kind, status)
            self._send(status, body.replace("$context.requestId", request_id))

        def _handle(self) -> None:
            request_id = str(uuid.uuid4())
            split = urlsplit(self.path)
            prefix = f"/{api.stage}"
            if not (split.path == prefix or split.path.startswith(prefix + "/")):
                self._gateway_error(
                    "MISSING_AUTHENTICATION_TOKEN",
                    403,
                    '{"message":"Missing Authentication Token"}',
                    request_id,
                )
                return
            path = split.path[len(prefix) :] or "/"
            matched = api.match(self.command, path)
            if matched is None:
                self._gateway_error(
                    "MISSING_AUTHENTICATION_TOKEN",
                    403,
                    '{"message":"Missing Authentication Token"}',
                    request_id,
                )
                return
            route, path_parameters = matched

            token = (self.headers.get("Authorization") or "").strip()
            if token.lower().startswith("bearer "):
                token = token[7:].strip()
            if not token:
                self._gateway_error("UNAUTHORIZED", 401, '{"message":"Unauthorized"}', request_id)
                return
            try:
                claims = api.verifier.verify(token)
            except TokenError as error:
                logger.info(
                    "token rejected", extra={"reason": str(error), "request_id": request_id}
                )
                self._gateway_error("UNAUTHORIZED", 401, '{"message":"Unauthorized"}', request_id)
                return

            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._gateway_error(
                    "REQUEST_TOO_LARGE", 413, '{"message":"Request Too Long"}', request_id
                )
                return
            body = self.rfile.read(length).decode("utf-8", errors="replace") if length else None
            event = _proxy_event(
                api,
                route,
                path,
                path_parameters,
                split.query,
                dict(self.headers),
                body,
                claims,
                request_id,
            )
            try:
                response = api.invoke(route.function, event)
            except FunctionError as error:
                logger.error(
                    "function failed",
                    extra={"function": route.function, "error_type": error.error_type},
                )
                self._send(502, '{"message": "Internal server error"}')
                return
            if not isinstance(response, dict) or "statusCode" not in response:
                self._send(502, '{"message": "Internal server error"}')
                return
            headers = {str(k): str(v) for k, v in (response.get("headers") or {}).items()}
            headers.setdefault("Content-Type", "application/json")
            headers["x-amzn-RequestId"] = request_id
            self._send(int(response["statusCode"]), response.get("body") or "", headers)

    return Handler


def _proxy_event(
    api: LocalApi,
    route: ApiRoute,
    path: str,
    path_parameters: dict[str, str],
    query: str,
    headers: dict[str, str],
    body: str | None,
    claims: dict[str, Any],
    request_id: str,
) -> dict[str, Any]:
    multi_query = parse_qs(query, keep_blank_values=True)
    return {
        "resource": route.path,
        "path": path,
        "httpMethod": route.method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": route.path,
            "httpMethod": route.method,
            "path": f"/{api.stage}{path}",
            "stage": api.stage,
            "requestId": request_id,
            "requestTimeEpoch": int(time.time() * 1000),
            "accountId": "123456789012",
            "apiId": "local",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": headers.get("User-Agent")},
            # API Gateway passes every claim as a string.
            "authorizer": {"claims": {key: _claim_string(value) for key, value in claims.items()}},
        },
        "body": body,
        "isBase64Encoded": False,
    }


def _claim_string(value: Any) -> str:
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)

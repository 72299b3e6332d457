"""A small threaded HTTP server that the stand-ins share.

Each stand-in subclasses `StandInServer` and implements `handle`, which turns one parsed
request into one response. The server binds 127.0.0.1 only. Port 0 picks a free port, and
`url` reports the port in use after `start`.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)

BIND_HOST = "127.0.0.1"


@dataclass(frozen=True)
class HttpRequest:
    """One parsed HTTP request. `path` is still percent-encoded."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """Parse the body as JSON, raising ValueError when it is not valid JSON."""
        return json.loads(self.body or b"null")


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(
    status: int, document: Any, headers: dict[str, str] | None = None
) -> HttpResponse:
    return HttpResponse(
        status=status,
        body=json.dumps(document).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def aws_error(status: int, error_type: str, message: str, **fields: Any) -> HttpResponse:
    """Build an AWS rest-json error: the type in `x-amzn-ErrorType`, the message in the body.

    botocore reads the error code from that header (the part before any ":"), so
    `ClientError.response["Error"]["Code"]` equals `error_type`.
    """
    return json_response(
        status,
        {"message": message, **fields},
        headers={"x-amzn-ErrorType": error_type, "x-amzn-RequestId": "standin-request"},
    )


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps botocore's pooled connections open; every response sets Content-Length.
    protocol_version = "HTTP/1.1"
    server: _Server

    def _dispatch(self) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = HttpRequest(
            method=self.command,
            path=parsed.path,
            query=urllib.parse.parse_qs(parsed.query),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        )
        try:
            response = self.server.stand_in.handle(request)
        except Exception as error:
            # A bug in a stand-in must reach the test as a 500, not as a dropped connection.
            logger.exception(
                "%s failed on %s %s", self.server.stand_in.name, self.command, parsed.path
            )
            response = aws_error(500, "InternalServerException", f"stand-in bug: {error!r}")
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.body:
            self.wfile.write(response.body)

    # http.server looks handlers up by these names.
    do_GET = _dispatch  # noqa: N815
    do_POST = _dispatch  # noqa: N815
    do_PUT = _dispatch  # noqa: N815
    do_DELETE = _dispatch  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines are logged at DEBUG only: they are noise in test output.
        logger.debug("%s %s", self.server.stand_in.name, format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 resets connections when tests send bursts of requests.
    request_queue_size = 128

    def __init__(self, port: int, stand_in: StandInServer) -> None:
        self.stand_in = stand_in
        super().__init__((BIND_HOST, port), _Handler)


class StandInServer:
    """Base class: serves `handle` on 127.0.0.1 in a background thread."""

    name = "stand-in"

    def __init__(self, port: int = 0) -> None:
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def handle(self, request: HttpRequest) -> HttpResponse:
        raise NotImplementedError

    def start(self) -> None:
        """Bind the port and serve in a daemon thread. Return once the socket is listening."""
        if self._server is not None:
            raise RuntimeError(f"{self.name} is already running at {self.url}")
        self._server = _Server(self._requested_port, self)
        # A short poll interval keeps stop() fast. The default of 0.5 s adds up across tests.
        self._thread = threading.Thread(
            target=functools.partial(self._server.serve_forever, poll_interval=0.05),
            name=f"{self.name}-server",
            daemon=True,
        )
        self._thread.start()
        logger.info("%s started url=%s", self.name, self.url)

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        logger.info("%s stopped url=%s", self.name, self.url)
        self._server = None
        self._thread = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{self.name} is not running: call start() first")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{BIND_HOST}:{self.port}"

    def __enter__(self) -> StandInServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

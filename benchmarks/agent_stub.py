"""A zero-latency agent for the request path benchmark: every invocation gets one fixed answer.

It serves the two routes of the agent app that the AgentCore stand-in and the local stack use
(`GET /ping` and `POST /invocations`) on 127.0.0.1 only, and never calls a model or a tool, so
the time of an invocation is the platform's own. Run as `python benchmarks/agent_stub.py PORT`.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agentpool.agent_contract import AgentRequest, AgentResponse

# The token counts of a short basic-tier answer, so the metering path prices a real usage.
FIXED_USAGE = {"inputTokens": 180, "outputTokens": 150, "totalTokens": 330}


class StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._send(200, {"status": "Healthy"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = AgentRequest.model_validate_json(self.rfile.read(length))
        response = AgentResponse(
            output="Fixed answer of the benchmark agent stub.",
            model_id=request.model_id,
            usage=FIXED_USAGE,
            model_calls=1,
        )
        self._send(200, response.model_dump(mode="json"))

    def _send(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Log nothing per request: the benchmark sends hundreds."""


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), StubHandler)
    server.serve_forever()


if __name__ == "__main__":
    main()

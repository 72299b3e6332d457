"""The local stack's logs contain no tokens, passwords, credentials, prompts, documents or outputs.

Prompts, documents and model outputs may be health data, and a token or credential in a log is a
credential leak. One test runs the whole request path with canary strings in the prompt and in
a document (so the model output contains them too), then scans every log file of the stack and the
records that the in-process servers (local API and stand-ins) logged.
"""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path

import pytest

from agentpool_dev import operations
from agentpool_dev.local_stack import LocalStack

from .conftest import ApiCaller, Onboarding, TokenForger, now

pytestmark = pytest.mark.integration

JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
CREDENTIAL_NAMES = re.compile(
    r"aws_secret_access_key|SecretAccessKey|SessionToken|aws_session_token", re.IGNORECASE
)


def leaks(text: str, literals: dict[str, str]) -> list[str]:
    """Name each kind of secret found in `text`, without repeating the secret itself."""
    found = [
        name
        for name, pattern in (
            ("JWT", JWT),
            ("access key id", ACCESS_KEY_ID),
            ("credential field", CREDENTIAL_NAMES),
        )
        if pattern.search(text)
    ]
    found += [name for name, literal in literals.items() if literal in text]
    return found


def test_stack_logs_contain_no_secrets(
    api: ApiCaller,
    target: operations.Target,
    stack: LocalStack,
    onboard: Onboarding,
    forger: TokenForger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    prompt_canary = f"canary-prompt-{uuid.uuid4().hex}"
    document_canary = f"canary-document-{uuid.uuid4().hex}"
    tenant_id = onboard.tenant(
        "premium",
        {"flu.md": f"Flu vaccine: adults over 65 get the high-dose vaccine. {document_canary}"},
    )
    user = onboard.user(tenant_id)
    # Onboarding's Cognito calls run in this process, and botocore logs their password and
    # tokens at DEBUG. So the scan of in-process records starts after onboarding.
    caplog.clear()

    first = api.post(user.token, {"prompt": f"Who gets the high-dose flu vaccine? {prompt_canary}"})
    second = api.post(
        user.token,
        {"prompt": f"And on which day? {prompt_canary}", "sessionId": first.body["sessionId"]},
    )
    expired = api.post(forger.resign(user.token, exp=now() - 60), {"prompt": prompt_canary})
    stack.wait_for_metering()

    assert first.status == 200
    assert second.status == 200
    assert expired.status == 401
    assert document_canary in first.body["output"], "precondition: the output contains the canary"
    literals = {
        "password": user.password,
        "prompt canary": prompt_canary,
        "document canary": document_canary,
        "model output": first.body["output"],
    }
    log_files = sorted(Path(stack.log_dir).glob("*.log"))
    assert {path.name for path in log_files} >= {"agent.log", "moto.log", "InvokeFunction.log"}
    # The scan covers this request: the agent logged its request id.
    assert first.body["requestId"] in (Path(stack.log_dir) / "agent.log").read_text("utf-8")
    for path in log_files:
        found = leaks(path.read_text(encoding="utf-8", errors="replace"), literals)
        assert found == [], f"{path.name} contains: {', '.join(found)}"
    in_process = leaks(caplog.text, literals)
    assert in_process == [], f"in-process logs contain: {', '.join(in_process)}"

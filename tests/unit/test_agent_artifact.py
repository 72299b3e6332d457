"""Contents of build/agent.zip, the agent's code zip for AgentCore Runtime.

`make agent-artifact` builds it (it needs PyPI but no AWS account), and `make test` builds it
before running these tests.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from agentpool_dev.deploy import ARTIFACT_PATH


@pytest.fixture(scope="module")
def names() -> set[str]:
    if not ARTIFACT_PATH.exists():
        pytest.skip(f"{ARTIFACT_PATH} is missing: run `make agent-artifact`")
    with zipfile.ZipFile(ARTIFACT_PATH) as archive:
        return set(archive.namelist())


@pytest.mark.parametrize(
    "name",
    [
        "main.py",
        "agent/app.py",
        "agent/loop.py",
        "agent/mcp_client.py",
        "agentpool/__init__.py",
        "agentpool/agent_contract.py",
        "agentpool/tools.py",
        "bedrock_agentcore/__init__.py",
        "pydantic/__init__.py",
    ],
)
def test_artifact_contains(names: set[str], name: str) -> None:
    assert name in names


def test_artifact_pydantic_core_for_aarch64(names: set[str]) -> None:
    extensions = [
        name
        for name in names
        if name.startswith("pydantic_core/_pydantic_core.") and name.endswith(".so")
    ]
    assert extensions != []
    assert all("aarch64" in Path(name).name for name in extensions), extensions


def test_artifact_has_no_bytecode(names: set[str]) -> None:
    assert [name for name in names if "__pycache__" in name] == []


def test_artifact_entry_point_imports_agent_app() -> None:
    entry = (Path(__file__).resolve().parents[2] / "agent" / "main.py").read_text()
    assert "from agent.app import main" in entry

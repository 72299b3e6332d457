"""Run the `agentpool` CLI as a user runs it: a subprocess pointed at a local stack's state."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def agentpool(
    state_file: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `agentpool ARGS` against the stack whose endpoints `state_file` holds."""
    env = {**os.environ, "AGENTPOOL_STATE_FILE": str(state_file), "COLUMNS": "200"}
    return subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "agentpool_dev.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )

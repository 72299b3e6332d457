"""The CLI's console output when stdout and stderr are files or pipes, not a terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Longer than the 80 columns that rich assumes when the output is not a terminal.
LONG_LINE = "export AGENTPOOL_EXAMPLE=" + "x" * 150


def run_python(args: list[str], state_file: Path) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if name not in {"COLUMNS", "LINES"}}
    env["AGENTPOOL_STATE_FILE"] = str(state_file)
    return subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_console_prints_long_line_whole(tmp_path: Path) -> None:
    script = f"from agentpool_dev.cli import console; console.print({LONG_LINE!r})"
    result = run_python(["-c", script], tmp_path / "missing.json")

    assert result.returncode == 0, result.stderr
    assert result.stdout == LONG_LINE + "\n"


def test_cli_error_printed_on_one_line(tmp_path: Path) -> None:
    result = run_python(
        ["-m", "agentpool_dev.cli", "usage", "--tenant", "harbor-clinic"],
        tmp_path / "missing.json",
    )

    expected = (
        "error: The local stack is not running. Start it with `make run` in another terminal."
    )
    assert len(expected) > 80
    assert result.returncode == 1
    assert result.stderr.splitlines() == [expected]

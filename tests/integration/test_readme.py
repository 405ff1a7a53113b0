"""The README's hands-on commands work when pasted, and `make down` leaves no process behind."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from localcluster.testing import ClusterHandle

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def hands_on_commands() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Try it by hand", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "the README lost its hands-on commands"
    return match.group(1)


def processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in command:
            found.append(f"{proc.name}: {command[:200]}")
    return found


def test_readme_hands_on_commands_work(local_cluster: ClusterHandle, tmp_path: Path) -> None:
    # Needs the built binaries (local_cluster guarantees them); runs its own cluster in tmp_path.
    state = tmp_path / "state"
    script = "set -euo pipefail\n" + hands_on_commands()
    try:
        result = subprocess.run(
            ["bash", "-c", script],
            cwd=REPO,
            env={**os.environ, "STATE": str(state)},
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        subprocess.run(["make", "-s", "down"], cwd=REPO, env={**os.environ, "STATE": str(state)}, timeout=60)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    output = result.stdout
    assert "deployment.apps/podinfo-primary" in output, output
    assert '"phase":"Initialized"' in output
    assert "Progressing" in output
    assert '"weight":25' in output, "the tick after the new revision shifts the first step"
    assert "New revision detected! Scaling up podinfo.test" in output
    assert processes_mentioning(str(state)) == []

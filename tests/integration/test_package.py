"""`pip install .` gives a working package: the wheel carries the code, the page's files and the
console scripts, and each script runs from the installed copy (not from this checkout)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

# One worker runs the whole module: the wheel built once.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("package")]

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = {"serin": "serin.cli:main", "kubectl-serin": "serin.cli:main", "serin-certs": "serin.certs:main"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from what the Dockerfile copies, no more: that is enough to install (and the build's
    # scratch folders land there, not in the checkout).
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "requirements.txt"):
        shutil.copy(REPO / name, source / name)
    for package in ("serin", "handlers"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("serin-*.whl")
    return built


def test_the_wheel_carries_code_page_and_scripts(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("serin/cli.py", "serin/certs.py", "serin/ticker.py", "handlers/__init__.py"):
        assert module in names, module
    assert "serin/templates/canary.html" in names
    assert any(name.startswith("serin/static/vendor/") for name in names)
    assert not any(name.startswith(("tests/", "localcluster/", "benchmarks/")) for name in names)
    (entry_points,) = [name for name in names if name.endswith("entry_points.txt")]
    declared = zipfile.ZipFile(wheel).read(entry_points).decode()
    for script, target in SCRIPTS.items():
        assert f"{script} = {target}" in declared


def test_installed_scripts_run(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    for script, usage in (
        ("serin", "usage: serin"),
        ("kubectl-serin", "usage: serin"),
        ("serin-certs", "usage: serin-certs"),
    ):
        result = subprocess.run(
            [str(target / "bin" / script), "--help"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(usage), result.stdout
    where = subprocess.run(
        [sys.executable, "-c", "import serin, handlers; print(serin.__file__, handlers.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=True,
    ).stdout.split()
    assert all(Path(path).is_relative_to(target) for path in where), where

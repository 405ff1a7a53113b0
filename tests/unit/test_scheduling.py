"""The integration tests' scheduling: an ``xdist_group`` runs on one worker, whatever pytest keeps
a node's id in."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scheduling import _has_group_suffix, _without_group

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("nodeid", "suffixed", "plain"),
    [
        ("t.py::test@real-proxy", True, "t.py::test"),
        ("t.py::test[a@b]@g", True, "t.py::test[a@b]"),
        ("t.py::test[a@b]", False, "t.py::test[a@b]"),
        ("t.py::test", False, "t.py::test"),
    ],
)
def test_a_group_suffix_is_read_as_xdist_reads_it(nodeid: str, suffixed: bool, plain: str) -> None:
    assert (_has_group_suffix(nodeid), _without_group(nodeid)) == (suffixed, plain)


def test_the_tests_of_a_group_run_on_one_worker(tmp_path: Path) -> None:
    grouped = "import pytest\npytestmark = pytest.mark.xdist_group('shared')\n"
    grouped += "".join(f"def test_grouped_{index}():\n    pass\n" for index in range(6))
    (tmp_path / "test_grouped.py").write_text(grouped)
    (tmp_path / "test_alone.py").write_text("".join(f"def test_alone_{index}():\n    pass\n" for index in range(6)))
    command = [sys.executable, "-m", "pytest", "-p", "tests.scheduling", "-p", "no:cacheprovider", "-n", "3"]
    ran = subprocess.run(
        [*command, "--dist", "loadgroup", "-v", "-c", "/dev/null", "--rootdir", str(tmp_path), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    workers = {
        name: worker for worker, name in re.findall(r"\[(gw\d)\] \[\s*\d+%\] PASSED \S*::(test_\w+)", ran.stdout)
    }
    assert len(workers) == 12, ran.stdout
    assert len({workers[f"test_grouped_{index}"] for index in range(6)}) == 1, workers

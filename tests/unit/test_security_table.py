"""The README's table of security findings names, for each finding, tests that exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FINDINGS = ["C1", *(f"H{n}" for n in range(1, 8)), *(f"M{n}" for n in range(1, 12)), *(f"L{n}" for n in range(1, 12))]
ROW = re.compile(r"^\| (?P<id>[CHML]\d+) \| (?P<finding>[^|]+) \| (?P<status>.+) \| (?P<tests>[^|]+) \|$")


def table() -> dict[str, tuple[str, str]]:
    """Finding ID to (status, tests) from the README's security table."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Security model") :]
    section = section[: section.index("\n## ", 1)]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        match = ROW.match(line)
        if match:
            assert match["id"] not in rows, f"two rows for {match['id']}"
            rows[match["id"]] = (match["status"], match["tests"])
    return rows


def defined_tests() -> tuple[set[str], set[str]]:
    """Names of test files, and of test functions and parameter ids, under tests/."""
    files, names = set(), set()
    for path in (REPO / "tests").rglob("test_*.py"):
        files.add(path.name)
        source = path.read_text()
        names |= set(re.findall(r"^\s*(?:async )?def (test_\w+)", source, re.MULTILINE))
        names |= set(re.findall(r"""id=["']([\w-]+)["']""", source))
        names |= set(re.findall(r"""^\s*\(\s*["']([\w-]+)["'],""", source, re.MULTILINE))
    return files, names


def test_every_finding_has_one_row() -> None:
    assert sorted(table()) == sorted(FINDINGS)


def test_every_test_a_row_names_exists() -> None:
    files, names = defined_tests()
    missing = {}
    for finding, (_, tests) in table().items():
        named = re.findall(r"`([\w.-]+)`", tests)
        absent = [name for name in named if name not in files and name not in names]
        if absent:
            missing[finding] = absent
    assert missing == {}


def test_a_row_without_tests_says_why_it_is_open() -> None:
    untested = {finding: status for finding, (status, tests) in table().items() if not re.search(r"`test_", tests)}
    assert all(
        status.startswith("open, and why:") and finding.startswith("L") for finding, status in untested.items()
    ), untested


def test_every_critical_high_and_medium_finding_is_closed() -> None:
    """Low findings may stay open with a reason; none of the others may."""
    open_ones = {
        finding: status[:60]
        for finding, (status, _) in table().items()
        if finding[0] in "CHM" and not status.startswith("closed")
    }
    assert open_ones == {}

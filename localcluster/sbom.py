"""The SBOM of Serin's image: a CycloneDX JSON document listing every Python package in its venv.

The Dockerfile runs this file in the build, with the venv's own Python (so the standard library
only): ``python sbom.py LOCK REPORT OUTPUT``. It reads what is installed (the venv's
distributions), the lock, and pip's install report (which file pip took for each package, and its
SHA-256), and refuses to write anything unless they agree: each installed package is locked at its
installed version, its file is one the lock names by hash, and each locked package is installed.
Each component then carries its version, its purl, the file's address and that file's SHA-256.
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

# The venv's own package: the SBOM's subject, not one of its components.
PROJECT = "serin"
SPEC_VERSION = "1.6"


class SbomError(RuntimeError):
    """What is installed, the lock and pip's report disagree; the message says how."""


@dataclass(frozen=True)
class Locked:
    version: str
    hashes: frozenset[str]


@dataclass(frozen=True)
class Fetched:
    """One file pip installed, as its report names it."""

    version: str
    url: str
    sha256: str


def normalize(name: str) -> str:
    """A distribution's name as indexes and purls compare it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(text: str) -> dict[str, Locked]:
    """``name==version`` and its ``--hash=sha256:...`` options, per entry of a pip-compile lock."""
    entries: dict[str, Locked] = {}
    # An entry goes on over lines ending in a backslash; comments stand on lines of their own.
    for entry in re.sub(r"\\\n", " ", text).splitlines():
        entry = entry.split("#", 1)[0].strip()
        if not entry or entry.startswith("-"):
            continue
        requirement, *options = entry.split()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^;\s]+)", requirement.split(";")[0])
        if not match:
            raise SbomError(f"the lock pins no exact version in {entry!r}")
        hashes = frozenset(option.removeprefix("--hash=sha256:") for option in options if option.startswith("--hash="))
        entries[normalize(match.group(1))] = Locked(match.group(2), hashes)
    return entries


def read_report(report: dict[str, Any]) -> dict[str, Fetched]:
    """The files of a ``pip install --report`` (format version 1)."""
    fetched: dict[str, Fetched] = {}
    for item in report["install"]:
        download, archive = item["download_info"], item["download_info"].get("archive_info", {})
        sha256 = archive.get("hashes", {}).get("sha256") or archive.get("hash", "").removeprefix("sha256=")
        fetched[normalize(item["metadata"]["name"])] = Fetched(item["metadata"]["version"], download["url"], sha256)
    return fetched


def installed() -> dict[str, str]:
    """The distributions of the running interpreter's environment: name, version."""
    return {normalize(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}


def check(present: dict[str, str], locked: dict[str, Locked], fetched: dict[str, Fetched]) -> None:
    problems = []
    for name, version in sorted(present.items()):
        if name == PROJECT:
            continue
        if name not in locked:
            problems.append(f"{name} {version} is installed but not locked")
        elif locked[name].version != version:
            problems.append(f"{name} {version} is installed, the lock has {locked[name].version}")
        elif name not in fetched or fetched[name].version != version:
            problems.append(f"{name} {version} is not in pip's report")
        elif fetched[name].sha256 not in locked[name].hashes:
            problems.append(f"{name}: the file installed ({fetched[name].url}) is not one the lock names")
    problems += [f"{name} is locked but not installed" for name in sorted(locked.keys() - present.keys())]
    if PROJECT not in present:
        problems.append(f"{PROJECT} itself is not installed")
    if problems:
        raise SbomError("; ".join(problems))


def purl(name: str, version: str) -> str:
    return f"pkg:pypi/{normalize(name)}@{version}"


def bom(
    present: dict[str, str],
    locked: dict[str, Locked],
    fetched: dict[str, Fetched],
    now: datetime | None = None,
) -> dict[str, Any]:
    """The CycloneDX document, once ``check`` has found the three sources in agreement."""
    check(present, locked, fetched)
    components = []
    for name in sorted(locked):
        file = fetched[name]
        hashes = [{"alg": "SHA-256", "content": file.sha256}]
        components.append(
            {
                "type": "library",
                "bom-ref": purl(name, file.version),
                "name": name,
                "version": file.version,
                "purl": purl(name, file.version),
                "hashes": hashes,
                "externalReferences": [{"type": "distribution", "url": file.url, "hashes": hashes}],
            }
        )
    timestamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": timestamp,
            "component": {"type": "application", "bom-ref": PROJECT, "name": PROJECT, "version": present[PROJECT]},
        },
        "components": components,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: sbom.py LOCK REPORT OUTPUT", file=sys.stderr)
        return 2
    lock, report, output = map(Path, argv)
    try:
        document = bom(installed(), read_lock(lock.read_text()), read_report(json.loads(report.read_text())))
    except SbomError as error:
        print(f"sbom.py: {error}", file=sys.stderr)
        return 1
    output.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

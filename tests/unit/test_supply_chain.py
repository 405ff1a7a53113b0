"""What the image is built from: the locks pin every package it installs, with hashes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from localcluster.sbom import read_lock

REPO = Path(__file__).resolve().parents[2]


def runtime_requirements() -> list[Requirement]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]


def test_the_lock_pins_every_runtime_requirement_at_its_version() -> None:
    locked = read_lock((REPO / "requirements.lock").read_text())
    for requirement in runtime_requirements():
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"requirements.txt pins {requirement.name} exactly"
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is missing from requirements.lock: run make lock"
        assert locked[name].version == specifier.version, f"{name}: run make lock"


def test_the_build_lock_pins_the_build_backend() -> None:
    locked = read_lock((REPO / "requirements-build.lock").read_text())
    build_system = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]
    for requirement in map(Requirement, build_system["requires"]):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is missing from requirements-build.lock: run make lock"
        assert requirement.specifier.contains(locked[name].version), f"{name}: run make lock"


def test_every_locked_package_has_a_hash() -> None:
    for lock in ("requirements.lock", "requirements-build.lock"):
        locked = read_lock((REPO / lock).read_text())
        assert locked, lock
        for name, entry in locked.items():
            assert entry.hashes, f"{lock}: {name} has no --hash"
            assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in entry.hashes), (lock, name)

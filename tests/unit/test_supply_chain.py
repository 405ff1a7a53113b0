"""What the image is built from: the locks pin every package it installs, with hashes, and the
Dockerfile installs nothing else and takes its base by digest."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from localcluster import image
from localcluster.sbom import read_lock

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "Dockerfile").read_text()


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
    for lock in ("requirements.lock", "requirements-build.lock", "requirements-dev.lock"):
        locked = read_lock((REPO / lock).read_text())
        assert locked, lock
        for name, entry in locked.items():
            assert entry.hashes, f"{lock}: {name} has no --hash"
            assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in entry.hashes), (lock, name)


def test_the_locks_were_made_for_the_images_python() -> None:
    # pip-compile keeps only the packages whose markers hold for the Python it runs on.
    base = re.search(r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)-slim@", DOCKERFILE, re.M)
    assert base, "the Dockerfile names its base as python:X.Y-slim@<digest>"
    assert f"python{base.group(1)}" in image.BASE_PACKAGES, "the local base has the same Python"
    for lock in ("requirements.lock", "requirements-build.lock", "requirements-dev.lock"):
        assert f"by pip-compile with Python {base.group(1)}\n" in (REPO / lock).read_text(), lock


def test_the_dev_lock_pins_every_dev_requirement_and_the_images_versions() -> None:
    """The venv tests and lint run in has what the image has, at the same versions, and what
    requirements-dev.txt pins, each by hash."""
    dev = read_lock((REPO / "requirements-dev.lock").read_text())
    lines = [line for line in (REPO / "requirements-dev.txt").read_text().splitlines() if line.strip()]
    for requirement in (Requirement(line) for line in lines if not line.startswith(("#", "-r"))):
        (specifier,) = requirement.specifier
        name = canonicalize_name(requirement.name)
        assert name in dev and dev[name].version == specifier.version, f"{name}: run make lock"
    runtime = read_lock((REPO / "requirements.lock").read_text())
    differ = {name: (each.version, dev[name].version) for name, each in runtime.items() if dev[name] != each}
    assert differ == {}, "requirements-dev.lock and requirements.lock disagree: run make lock"


def test_the_venv_installs_only_what_the_dev_lock_names_by_hash() -> None:
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile[makefile.index("$(PYTHON): ") :].split("\n\n", 1)[0]
    installs = [line.strip() for line in recipe.splitlines() if "pip install" in line]
    assert installs == [
        "$(PYTHON) -m pip install --quiet --require-hashes --no-deps -r requirements-build.lock",
        "$(PYTHON) -m pip install --quiet --require-hashes --no-build-isolation -r requirements-dev.lock",
        "$(PYTHON) -m pip install --quiet --no-deps --no-build-isolation --editable .",
    ]


def dockerfile_commands() -> list[str]:
    """Each shell command of each RUN, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    runs = [line.removeprefix("RUN ") for line in joined.splitlines() if line.startswith("RUN ")]
    return [command.strip() for run in runs for command in run.split("&&")]


def test_the_image_installs_only_what_the_locks_name_by_hash() -> None:
    pip = [command for command in dockerfile_commands() if re.search(r"/pip .*\b(install|wheel)\b", command)]
    assert pip, "the Dockerfile runs pip"
    for command in pip:
        # Either from a lock, each file checked against its hashes, its deps not resolved and no
        # package's build code run; or from the local files alone.
        from_lock = all(flag in command for flag in ("--require-hashes", "--no-deps", "--only-binary=:all:"))
        local_only = all(flag in command for flag in ("--no-index", "--no-deps"))
        assert from_lock or local_only, command
        if "--require-hashes" in command:
            assert re.search(r"--requirement /src/requirements(-build)?\.lock\b", command), command
    # Serin's own wheel is built with the locked setuptools: build isolation would fetch it unchecked.
    (wheel,) = [command for command in pip if re.search(r"/pip wheel\b", command)]
    assert "--no-build-isolation" in wheel


def test_the_base_image_is_pinned_by_digest() -> None:
    assert re.search(r"^ARG PYTHON_IMAGE=python:[\w.-]+@\$\{PYTHON_IMAGE_DIGEST\}$", DOCKERFILE, re.M)
    # No default: a build that is not given the digest fails instead of taking whatever the tag names.
    assert re.search(r"^ARG PYTHON_IMAGE_DIGEST$", DOCKERFILE, re.M)
    stages = re.findall(r"^FROM (\S+)", DOCKERFILE, re.M)
    assert stages and set(stages) == {"${PYTHON_IMAGE}"}, stages

"""Debian packages the tests need beyond Python's (a browser, container tools), installed the
first time they are missing, so that a fresh machine needs nothing installed by hand.

Installs only when it can do so without asking anyone: as root, with apt-get present.
``apt-get update`` runs only when the install fails first, since a fresh machine has no package
lists but a used one usually has good enough ones and the update costs time.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from localcluster.paths import cache_dir

# Another build on the same machine may hold dpkg's lock; wait for it rather than fail at once.
_APT_GET = ("apt-get", "-o", "DPkg::Lock::Timeout=300")


def _log(message: str) -> None:
    print(f"[localcluster debian] {message}", file=sys.stderr, flush=True)


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run([*_APT_GET, *args], capture_output=True, text=True, env=env)


@contextlib.contextmanager
def _one_install_at_a_time() -> Iterator[None]:
    """Parallel test workers may want packages at the same moment; apt-get waits for dpkg's lock but
    not for the package lists' lock that `apt-get update` takes, so installs here take turns."""
    lock = cache_dir() / "apt.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ensure_packages(wanted: Mapping[str, Path]) -> None:
    """Install each package (name: a file it provides) whose file is missing.

    Raises RuntimeError naming what to install when it cannot install it itself.
    """
    if all(path.exists() for path in wanted.values()):
        return
    with _one_install_at_a_time():
        _install_missing(wanted)


def _install_missing(wanted: Mapping[str, Path]) -> None:
    missing = sorted(package for package, path in wanted.items() if not path.exists())
    if not missing:
        return  # another worker installed them while this one waited
    command = f"apt-get update && apt-get install -y --no-install-recommends {' '.join(missing)}"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(f"missing Debian packages {', '.join(missing)}: install them (as root: {command})")
    _log(f"installing {', '.join(missing)} (once per machine)")
    install = ("install", "-y", "--no-install-recommends", *missing)
    result = _apt_get(*install)
    if result.returncode != 0:
        # A fresh machine has no package lists yet, an old one may list versions no longer served.
        _log("apt-get update (package lists are missing or stale)")
        updated = _apt_get("update")
        if updated.returncode != 0:
            _log(f"apt-get update failed: {updated.stderr.strip()}")
        result = _apt_get(*install)
    still = [package for package in missing if not wanted[package].exists()]
    if result.returncode != 0 or still:
        raise RuntimeError(
            f"could not install {', '.join(missing)} (apt-get exited {result.returncode}; {command}):\n"
            f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    _log(f"installed {', '.join(missing)}")

"""A real headless browser for the UI tests: Debian's Chromium, driven by Playwright.

Playwright's own ``playwright install`` downloads a browser build from a CDN, which this project's
machines cannot reach; Debian's ``chromium`` package comes from the package mirror they can reach,
so the tests launch that binary through ``executable_path`` instead. Nothing on a fresh machine
installs it by hand, hence ``ensure_chromium``: the first test run (or ``python -m
localcluster.browser``) installs it once, later runs find it at once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CHROMIUM_PATH = Path("/usr/bin/chromium")

# Chromium's own connections to the internet are refused on these machines. Without the
# background-networking, component-update and sync flags it keeps retrying them (slow starts,
# noise in the logs); QUIC is off for the same reason. --no-sandbox because the tests run as root,
# --disable-gpu because there is none, --no-first-run so that no welcome page opens.
CHROMIUM_ARGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

# Another build on the same machine may hold dpkg's lock; wait for it rather than fail at once.
_APT_GET = ("apt-get", "-o", "DPkg::Lock::Timeout=300")


def _log(message: str) -> None:
    print(f"[localcluster browser] {message}", file=sys.stderr, flush=True)


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run([*_APT_GET, *args], capture_output=True, text=True, env=env)


def ensure_chromium() -> Path:
    """Return the path of Debian's Chromium, installing the package first if it is missing.

    Installs only when it can do so without asking anyone: as root, with apt-get present.
    ``apt-get update`` runs only when the install fails first, since a fresh machine has no
    package lists but a used one usually has good enough ones and the update costs time.
    Raises RuntimeError naming what to install when it cannot install it itself.
    """
    if CHROMIUM_PATH.exists():
        return CHROMIUM_PATH
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(
            f"{CHROMIUM_PATH} is missing: install Debian's chromium package "
            "(as root: apt-get update && apt-get install -y --no-install-recommends chromium)"
        )
    _log("installing Debian's chromium package (well under a minute, once per machine)")
    install = ("install", "-y", "--no-install-recommends", "chromium")
    result = _apt_get(*install)
    if result.returncode != 0:
        # A fresh machine has no package lists yet, an old one may list versions no longer served.
        _log("apt-get update (package lists are missing or stale)")
        updated = _apt_get("update")
        if updated.returncode != 0:
            _log(f"apt-get update failed: {updated.stderr.strip()}")
        _log("installing Debian's chromium package again")
        result = _apt_get(*install)
    if result.returncode != 0 or not CHROMIUM_PATH.exists():
        raise RuntimeError(
            f"could not install Debian's chromium package (apt-get exited {result.returncode}); "
            f"{CHROMIUM_PATH} is still missing:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    _log(f"installed {CHROMIUM_PATH}")
    return CHROMIUM_PATH


if __name__ == "__main__":
    print(ensure_chromium())

"""A real headless browser for the UI tests: Debian's Chromium, driven by Playwright.

Playwright's own ``playwright install`` downloads a browser build from a CDN, which this project's
machines cannot reach; Debian's ``chromium`` package comes from the package mirror they can reach,
so the tests launch that binary through ``executable_path`` instead. Nothing on a fresh machine
installs it by hand, hence ``ensure_chromium``: the first test run (or ``python -m
localcluster.browser``) installs it once, later runs find it at once.
"""

from __future__ import annotations

from pathlib import Path

from localcluster.debian import ensure_packages

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


def ensure_chromium() -> Path:
    """Return the path of Debian's Chromium, installing the package first if it is missing."""
    ensure_packages({"chromium": CHROMIUM_PATH})
    return CHROMIUM_PATH


if __name__ == "__main__":
    print(ensure_chromium())

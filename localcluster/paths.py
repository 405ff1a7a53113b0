"""Where the local control plane keeps its cache (built binaries) and its state (one cluster)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Built binaries live outside the repo so that every clone and every run reuses them."""
    configured = os.environ.get("SERIN_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "serin"


def default_state_dir() -> Path:
    return REPO_ROOT / ".localcluster"

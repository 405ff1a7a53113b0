"""Run a command as Serin runs in a Pod: with a service account, not a kubeconfig.

In a Pod the kubernetes package's in-cluster loader reads the service account's token and the
cluster's CA from ``/var/run/secrets/kubernetes.io/serviceaccount`` and the API server's address
from ``KUBERNETES_SERVICE_HOST`` and ``_PORT``; a kubeconfig would load (and import) another
loader. The command runs in a mount namespace of its own (``unshare``: root, or a kernel that
lets users make one) whose ``/run`` is a fresh tmpfs holding those two files, so nothing on the
machine changes and nothing else sees them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

SERVICE_ACCOUNT = "/run/secrets/kubernetes.io/serviceaccount"
# sh -c SCRIPT sh TOKEN CA COMMAND...: the files copied in, then the command in the same process.
_SCRIPT = (
    f'mount -t tmpfs tmpfs /run && mkdir -p {SERVICE_ACCOUNT} && cp "$1" {SERVICE_ACCOUNT}/token '
    f'&& cp "$2" {SERVICE_ACCOUNT}/ca.crt && shift 2 && exec "$@"'
)


def available() -> bool:
    """Whether this machine lets a process have mounts of its own."""
    if shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--mount", "--propagation", "private", "sh", "-c", "mount -t tmpfs tmpfs /run"]
    return subprocess.run(probe, capture_output=True).returncode == 0


def command(argv: list[str], token: Path, ca: Path) -> list[str]:
    """``argv`` run with ``token`` and ``ca`` where a Pod has its service account's."""
    mounts = ["unshare", "--mount", "--propagation", "private"]
    return [*mounts, "sh", "-c", _SCRIPT, "sh", str(token), str(ca), *argv]


def environment(env: dict[str, str], api_server: str) -> dict[str, str]:
    """``env`` as a Pod's: the API server's address (a URL), and no kubeconfig."""
    address = urlsplit(api_server)
    pod = {key: value for key, value in env.items() if key != "KUBECONFIG"}
    return {**pod, "KUBERNETES_SERVICE_HOST": address.hostname or "", "KUBERNETES_SERVICE_PORT": str(address.port)}

"""Serin's container image, built from the Dockerfile without Docker, and run under podman.

These machines reach no container registry, so ``FROM python:3.11-slim`` cannot be pulled.
Instead a base with the same role is made locally: Debian bookworm with Python 3.11 from the
package mirror (``mmdebstrap``), imported into buildah's store; the unchanged Dockerfile is then
built on it (``--build-arg PYTHON_IMAGE``) by buildah in chroot isolation. Anywhere a registry is
reachable, ``docker build .`` (or ``buildah bud``) builds the same Dockerfile on the real base, which
it names by digest (``PYTHON_IMAGE_DIGEST``). The local base is not pulled from anywhere: apt
checks every package against the archive's signed index, and ``PYTHON_IMAGE`` names it instead.
Either way the Python packages are the locks' (``requirements.lock``), each checked by hash.

The image carries the SBOM of its venv (``SBOM_IN_IMAGE``, made by ``localcluster/sbom.py`` in the
build); ``build`` copies it out to ``artifacts/image/sbom.cdx.json``.

The store lives under the cache (``$SERIN_CACHE/containers``), so the base is made once per
machine and rebuilds reuse every unchanged layer. ``python -m localcluster.image`` (``make
image``) builds and prints the image's name.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from localcluster.debian import ensure_packages
from localcluster.paths import REPO_ROOT, cache_dir

BASE_IMAGE = "localhost/serin-base:python3.11-bookworm"
IMAGE = "localhost/serin:dev"
# Where the Dockerfile puts the image's SBOM (CycloneDX JSON).
SBOM_IN_IMAGE = "/usr/share/serin/sbom.cdx.json"
TOOLS = {
    "buildah": Path("/usr/bin/buildah"),
    "podman": Path("/usr/bin/podman"),
    "mmdebstrap": Path("/usr/bin/mmdebstrap"),
    # podman's default runtime (crun) cannot lower rlimits nor run with this kernel's hybrid
    # cgroups in these sandboxes; runc can.
    "runc": Path("/usr/sbin/runc"),
    "slirp4netns": Path("/usr/bin/slirp4netns"),
}
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# What python:3.11-slim has that the Dockerfile uses: python (and its venv module) and CA
# certificates; documentation and locales left out, as -slim does.
BASE_PACKAGES = ("python3.11", "python3.11-venv", "python-is-python3", "ca-certificates")
# The host's CA bundle is lent to the build's RUN steps (not stored in the image), so that pip
# reaches PyPI through whatever TLS-intercepting proxy the host trusts.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# podman would raise the container's rlimits above what it may set here; these fit under them.
ULIMITS = ("--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768")


class ImageError(RuntimeError):
    """The image could not be built; the message says which step and why."""


def _store(cache: Path) -> list[str]:
    root = cache / "containers"
    return ["--root", str(root / "storage"), "--runroot", str(root / "run"), "--storage-driver", "overlay"]


def buildah(*args: str, cache: Path | None = None) -> subprocess.CompletedProcess[str]:
    return _run(["buildah", *_store(cache or cache_dir()), *args])


def podman_command(cache: Path | None = None) -> list[str]:
    return ["podman", *_store(cache or cache_dir()), "--runtime", "runc"]


def _run(command: Sequence[str], env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(command), capture_output=True, text=True, env=env, timeout=1800)
    if result.returncode != 0:
        raise ImageError(f"{' '.join(command[:6])} ... failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def _log(message: str) -> None:
    print(f"[localcluster image] {message}", file=sys.stderr, flush=True)


def _has_image(name: str, cache: Path) -> bool:
    listed = subprocess.run(
        ["buildah", *_store(cache), "images", "--quiet", name], capture_output=True, text=True, check=False
    )
    return listed.returncode == 0 and bool(listed.stdout.strip())


def ensure_base(cache: Path) -> str:
    """The stand-in for python:3.11-slim, made once per machine."""
    if _has_image(BASE_IMAGE, cache):
        return BASE_IMAGE
    _log("making a Debian bookworm base with Python 3.11 (mmdebstrap, under a minute)")
    excluded = ("/usr/share/man/*", "/usr/share/doc/*", "/usr/share/locale/*", "/usr/share/info/*")
    with tempfile.TemporaryDirectory() as scratch:
        rootfs = Path(scratch) / "rootfs.tar"
        _run(
            [
                "mmdebstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                *(f"--dpkgopt=path-exclude={path}" for path in excluded),
                "--dpkgopt=path-include=/usr/share/doc/*/copyright",
                "--format=tar",
                "bookworm",
                str(rootfs),
                f"deb {DEBIAN_MIRROR} bookworm main",
                f"deb {DEBIAN_MIRROR} bookworm-updates main",
                f"deb {DEBIAN_MIRROR}-security bookworm-security main",
            ]
        )
        container = buildah("from", "scratch", cache=cache).stdout.strip()
        buildah("add", container, str(rootfs), "/", cache=cache)
    buildah("config", "--env", "LANG=C.UTF-8", "--cmd", "python3", container, cache=cache)
    buildah("commit", "--rm", container, BASE_IMAGE, cache=cache)
    return BASE_IMAGE


def sbom_path() -> Path:
    """Where ``build`` writes the image's SBOM: beside the tests' other artifacts."""
    return Path(os.environ.get("SERIN_ARTIFACTS") or REPO_ROOT / "artifacts") / "image" / "sbom.cdx.json"


def copy_sbom(name: str, cache: Path) -> Path:
    """The SBOM the image carries, written to ``sbom_path()``."""
    run = [*podman_command(cache), "run", "--rm", "--network", "none", *ULIMITS, "--entrypoint", "cat"]
    shown = _run([*run, name, SBOM_IN_IMAGE])
    path = sbom_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(shown.stdout)
    return path


def build(cache: Path | None = None) -> str:
    """Build the Dockerfile into ``IMAGE`` and copy out its SBOM; return the image's name."""
    cache = cache or cache_dir()
    ensure_packages(TOOLS)
    base = ensure_base(cache)
    _log(f"building {IMAGE} from the Dockerfile")
    volumes = ["--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"] if HOST_CA_BUNDLE.exists() else []
    buildah(
        "bud",
        "--isolation=chroot",
        "--pull=never",
        "--layers",
        "--build-arg",
        f"PYTHON_IMAGE={base}",
        *volumes,
        "--file",
        str(REPO_ROOT / "Dockerfile"),
        "--tag",
        IMAGE,
        str(REPO_ROOT),
        cache=cache,
    )
    _log(f"its SBOM: {copy_sbom(IMAGE, cache)}")
    return IMAGE


if __name__ == "__main__":
    print(build())

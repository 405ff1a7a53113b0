"""Serin's Helm chart (charts/serin) is the one source of the install manifests: k8s/ is the chart
rendered with its default values, and k8s/overlays/cert-manager/ the chart rendered with
``certManager.enabled``. ``python -m localcluster.chart`` (``make manifests``) writes them; a test
fails when they differ from what the chart renders, so the two installs cannot drift.

Hand-written and not rendered: the kustomizations themselves and k8s/namespace.yaml (Helm users
create the namespace with ``helm install --create-namespace``, or as the README says), which the
cert-manager variant copies.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from localcluster.build import build_helm
from localcluster.paths import REPO_ROOT, cache_dir

CHART = REPO_ROOT / "charts" / "serin"
K8S = REPO_ROOT / "k8s"
CERT_MANAGER_OVERLAY = K8S / "overlays" / "cert-manager"
# What k8s/ installs into, and the release name its labels carry.
NAMESPACE = "serin-system"
RELEASE = "serin"


def helm_binary() -> Path:
    return build_helm(cache_dir())


def helm(*args: str, helm_path: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [str(helm_path or helm_binary()), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


def render(sets: Sequence[str] = (), helm_path: Path | None = None) -> dict[str, str]:
    """Each file of the chart as `helm template` renders it: {"templates/rbac.yaml": text, ...},
    hooks and CRDs included, each document as Helm orders it, without Helm's `# Source:` lines."""
    with tempfile.TemporaryDirectory() as out:
        arguments = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--include-crds", "--output-dir", out]
        for value in sets:
            arguments += ["--set", value]
        helm(*arguments, helm_path=helm_path)
        root = Path(out) / CHART.name
        rendered: dict[str, str] = {}
        for path in sorted(root.rglob("*.yaml")):
            text = re.sub(r"(?m)^# Source: .*\n", "", path.read_text())
            documents = [document.strip("\n") for document in re.split(r"(?m)^---\n", text)]
            objects = [document for document in documents if re.search(r"(?m)^kind: ", document)]
            if objects:
                rendered[str(path.relative_to(root))] = "\n---\n".join(objects) + "\n"
        return rendered


def _header(source: str) -> str:
    return f"# Rendered from charts/serin/{source} by `make manifests`: edit the chart, not this file.\n"


def manifests(helm_path: Path | None = None) -> dict[Path, str]:
    """Every rendered file of k8s/ and of its cert-manager variant, by path, with its content.

    The variant is a rendering of its own rather than patches over k8s/: kustomize refuses an
    overlay inside its base's folder, and a whole rendering leaves nothing to keep in step by hand.
    """
    files: dict[Path, str] = {}
    for source, text in render(helm_path=helm_path).items():
        folder, _, name = source.partition("/")
        target = K8S / "crds" / name if folder == "crds" else K8S / name
        files[target] = _header(source) + text
    for source, text in render(["certManager.enabled=true"], helm_path=helm_path).items():
        folder, _, name = source.partition("/")
        if folder == "templates":
            files[CERT_MANAGER_OVERLAY / name] = _header(source) + text
    # The dashboard's JSON, to import into Grafana by hand.
    files[K8S / "grafana" / "serin.json"] = (CHART / "dashboards" / "serin.json").read_text()
    files[CERT_MANAGER_OVERLAY / "namespace.yaml"] = (
        "# A copy of k8s/namespace.yaml, made by `make manifests`.\n" + (K8S / "namespace.yaml").read_text()
    )
    return files


def stale(helm_path: Path | None = None) -> list[Path]:
    """The rendered files that are missing or differ from what the chart renders now."""
    return [path for path, text in manifests(helm_path).items() if not path.is_file() or path.read_text() != text]


def main(argv: Sequence[str] = ()) -> int:
    for path, text in manifests().items():
        if not path.is_file() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

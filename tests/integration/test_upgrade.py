"""Upgrading Serin in the middle of a release: the previous release's server steps a Canary into
its analysis and stops; this checkout's server, started on the same cluster, carries on from the
status the old one wrote, to Succeeded, without starting the analysis again."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from localcluster import processes
from localcluster.testing import ClusterHandle
from tests.integration.conftest import running_serin
from tests.integration.helpers import SerinServer, drive, events, initialized, set_image, tick_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# The release users upgrade from. Move it forward when a release ships; the status it wrote must
# stay readable by every later one.
PREVIOUS_RELEASE = "7c70fbf5d250f8cd1faa73371ec8b7964fb9d402"
SERVER_FILES = ("serin", "handlers", "wsgi.py", "gunicorn.conf.py")


def checkout(commit: str, into: Path) -> Path:
    """The server's files as they were at ``commit`` (this clone's history must hold it)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit, *SERVER_FILES], capture_output=True, check=False
    )
    assert archive.returncode == 0, f"cannot read release {commit} from git (a shallow clone?): {archive.stderr!r}"
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def test_a_release_in_analysis_carries_on_after_an_upgrade(
    local_cluster: ClusterHandle,
    serin_server: SerinServer,
    serin_kubeconfig: Path,
    tokens: dict[str, str],
    namespace: str,
    tmp_path: Path,
) -> None:
    token = tokens["ticker"]
    # The previous release took any token the API server takes, and ticking needed `update`:
    # Serin's own account has both.
    old_token = local_cluster.kubectl("create", "token", "serin", "-n", "serin-tests", "--duration=1h").stdout.strip()
    old_source = checkout(PREVIOUS_RELEASE, tmp_path / "previous")
    imported = subprocess.run(
        [sys.executable, "-c", "import serin; print(serin.__file__)"],
        cwd=old_source,
        capture_output=True,
        text=True,
        check=True,
        env=processes.child_environment(),
    ).stdout.strip()
    assert Path(imported).is_relative_to(old_source), "the old server must run the old code"

    with running_serin(local_cluster, serin_kubeconfig, tmp_path / "old-server", source=old_source) as old:
        initialized(local_cluster, old, old_token, namespace)
        set_image(local_cluster, namespace, "6.0.1")
        before = tick_until(local_cluster, old, old_token, namespace, lambda status: status.get("canaryWeight") == 20)
    assert before["phase"] == "Progressing"

    after = drive(local_cluster, serin_server, token, namespace, "Succeeded")
    assert after["lastPromotedSpec"] == after["lastAppliedSpec"]
    history = events(local_cluster, namespace)
    assert history.count(f"New revision detected! Scaling up podinfo.{namespace}") == 1, history
    assert history.count(f"Advance podinfo.{namespace} canary weight 20") == 1, "the analysis went on, not again"
    assert f"Advance podinfo.{namespace} canary weight 40" in history
    assert f"Promotion completed! Scaling down podinfo.{namespace}" in history
    assert not any(line.startswith("Rolling back") for line in history), history

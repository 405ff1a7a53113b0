"""Cold start: how long a fresh process takes to import the server and build the app.

Serin's handlers are meant to start like serverless functions, so every dependency's import time
counts. Measures, in fresh Python processes: the interpreter alone (the baseline), importing each
runtime dependency, and ``import wsgi`` (the whole app, as gunicorn loads it), with a service
account as in a Pod (``benchmarks/pod.py``, where this machine can) and with a kubeconfig.

Usage: ``python -m benchmarks.cold_start [--runs 10]``. Needs a kubeconfig (or a token) only to
build the client, not a running cluster.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import pod
from localcluster.paths import REPO_ROOT
from localcluster.pki import write_serving_pair

CASES = [
    ("baseline: python -c pass", "pass"),
    ("import flask", "import flask"),
    ("import kubernetes.client", "import kubernetes.client"),
    ("import requests", "import requests"),
    ("import cryptography.x509", "import cryptography.x509"),
    ("import prometheus_client", "import prometheus_client"),
    # The canary judge's statistics are Serin's own rather than SciPy's (a test dependency only).
    ("import serin.stats", "import serin.stats"),
    ("import scipy.stats (not in the app)", "import scipy.stats"),
    ("import wsgi (the whole app, a kubeconfig)", "import wsgi"),
]
# The whole app as in a Pod: what the image runs in a cluster.
IN_A_POD = ("import wsgi (the whole app, in a Pod)", "import wsgi")

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="fresh processes per case (at most 100)")
    args = parser.parse_args()
    runs = max(3, min(args.runs, 100))
    kubeconfig = Path(tempfile.mkdtemp(prefix="serin-cold-")) / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "SERIN_ADMISSION_AUTHENTICATION": "none",  # what the app reads at start; no review is sent
    }
    cases = [(name, code, False) for name, code in CASES]
    if pod.available():
        # No request is made at import: a token and a CA that name no real cluster do.
        (token := kubeconfig.with_name("token")).write_text("not-a-token")
        ca = write_serving_pair(kubeconfig.parent / "ca", ["127.0.0.1"])[2]
        (ca_file := kubeconfig.with_name("ca.crt")).write_bytes(ca)
        cases.append((*IN_A_POD, True))
    rows = []
    for name, code, in_pod in cases:
        command, environment = [sys.executable, "-c", code], env
        if in_pod:
            command = pod.command(command, token, ca_file)
            environment = pod.environment(env, "https://127.0.0.1:9")
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run(command, cwd=REPO_ROOT, env=environment, check=True)
            samples.append(time.perf_counter() - started)
        rows.append((name, statistics.median(samples) * 1000, min(samples) * 1000))
    baseline = rows[0][1]
    print(f"\ncold start, {runs} fresh processes per case (ms)")
    print(f"{'case':42} {'median':>8} {'min':>8} {'over baseline':>14}")
    for name, median, fastest in rows:
        print(f"{name:42} {median:8.0f} {fastest:8.0f} {median - baseline:+14.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The server's log, as gunicorn writes it: every line one JSON object, admission reviews and tick
steps naming their Canary (and the review's uid), and the access log in the same shape."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from localcluster import processes
from localcluster.testing import ClusterHandle
from tests.integration.helpers import SerinServer, canary, initialized

pytestmark = pytest.mark.integration


def log_lines(server: SerinServer) -> list[dict[str, Any]]:
    assert server.log is not None
    lines = server.log.read_text().splitlines()
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line in {server.log}: {line!r}")
    return parsed


def test_every_line_is_json_and_names_what_it_is_about(
    local_cluster: ClusterHandle,
    serin_server: SerinServer,
    tokens: dict[str, str],
    namespace: str,
) -> None:
    initialized(local_cluster, serin_server, tokens["ticker"], namespace)
    invalid = canary(namespace, {"interval": "5s", "stepWeight": 10, "maxWeight": 50, "threshold": 1})
    invalid["metadata"]["name"] = "too-fast"
    denied = local_cluster.kubectl("apply", "-f", "-", input_text=json.dumps(invalid), check=False)
    assert denied.returncode != 0

    lines = log_lines(serin_server)
    for line in lines:
        assert {"time", "level", "logger", "msg"} <= line.keys(), line
    mine = [line for line in lines if line.get("namespace") == namespace]

    reviews = [line for line in mine if line["logger"] == "serin.handlers.admission"]
    created = next(line for line in reviews if line.get("canary") == "podinfo" and line["msg"].startswith("CREATE"))
    assert created["msg"].startswith("CREATE Canary podinfo allowed")
    uuid.UUID(created["request_id"])
    refusal = next(line for line in reviews if line.get("canary") == "too-fast")
    assert refusal["msg"].startswith("CREATE Canary too-fast denied: Canary too-fast is invalid:\n")
    assert "spec.analysis.interval: must be at least 10s (got 5s)" in refusal["msg"]
    assert refusal["request_id"] != created["request_id"]

    steps = [line for line in mine if line["logger"] == "serin.reconcile" and line.get("canary") == "podinfo"]
    assert any("(phase Initialized, weight 0)" in line["msg"] for line in steps), steps

    access = [line for line in lines if line["logger"] == "gunicorn.access"]
    # The defaulting review changed the Canary: it is in the access log (a review allowed as it is
    # would not be, by default).
    mutate = next(line for line in access if line["path"] == "/mutate")
    assert (mutate["method"], mutate["status"], mutate["user_agent"]) == ("POST", 200, "kube-apiserver-admission")
    assert isinstance(mutate["duration_ms"], int)
    # This test's ticks (the session's server answers other tests' too, some of them refused).
    ticks = [line for line in access if line["path"] == "/tick" and f"namespace={namespace}" in line.get("query", "")]
    assert ticks and all(line["status"] == 200 for line in ticks)


@pytest.mark.parametrize(
    ("env", "line"),
    [
        pytest.param(
            {"SERIN_LOG_FORMAT": "yaml", "SERIN_ADMISSION_AUTHENTICATION": "none"},
            "serin: SERIN_LOG_FORMAT must be one of json, text, not 'yaml'",
            id="log-format",
        ),
        pytest.param(
            {},
            "serin: SERIN_ADMISSION_AUTHENTICATION must be client-certificate (with SERIN_ADMISSION_CLIENT_CA, the CA "
            "of the API server's webhook client certificate) or none (the webhooks then write nothing), not 'unset'",
            id="who-may-send-reviews-unsaid",
        ),
        pytest.param(
            {"SERIN_ADMISSION_AUTHENTICATION": "client-certificate", "SERIN_ADMISSION_CLIENT_CA": "/nowhere/ca.crt"},
            "serin: SERIN_ADMISSION_AUTHENTICATION is client-certificate, so SERIN_ADMISSION_CLIENT_CA must name the "
            "file of the CA that signs the API server's webhook client certificate (is '/nowhere/ca.crt')",
            id="client-ca-missing",
        ),
    ],
)
def test_a_setting_that_cannot_work_stops_the_server_with_one_clear_line(env: dict[str, str], line: str) -> None:
    repo = Path(__file__).resolve().parents[2]
    environment = {**processes.child_environment(), **env}
    for name in ("SERIN_ADMISSION_AUTHENTICATION", "SERIN_ADMISSION_CLIENT_CA"):
        if name not in env:
            environment.pop(name, None)
    started = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:0", "wsgi:app"],
        cwd=repo,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (started.returncode, started.stderr) == (1, line + "\n")

"""Our own Prometheus instance: Debian's binary, our config, a free loopback port.

It scrapes the targets listed in a file-based service discovery file, so tests can add a target
(a simulator, a Serin server) without restarting it. The scrape interval is short because tests
and the demo look at rates over a few seconds, not minutes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import yaml

from localcluster import processes
from localcluster.processes import ClusterState

SCRAPE_INTERVAL = "1s"


class PrometheusError(RuntimeError):
    """A query failed or Prometheus did not answer."""


def config(targets_file: Path, scrape_interval: str = SCRAPE_INTERVAL) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [
            {
                "job_name": "local",
                "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "1s"}],
            }
        ],
    }


def set_targets(state_dir: Path, urls: list[str]) -> None:
    """Point Prometheus at these /metrics endpoints (it rereads the file within a second)."""
    targets_file = state_dir / "prometheus" / "targets.json"
    targets_file.parent.mkdir(parents=True, exist_ok=True)
    hosts = sorted({urlsplit(url).netloc for url in urls})
    tmp = targets_file.with_suffix(".tmp")
    tmp.write_text(json.dumps([{"targets": hosts, "labels": {}}]))
    tmp.replace(targets_file)


def ensure_prometheus(state_dir: Path, binary: Path, state: ClusterState, targets: list[str]) -> str:
    """Start Prometheus unless it runs; return its URL."""
    from localcluster.cluster import wait_for

    set_targets(state_dir, targets)
    pid, begun = state.processes.get("prometheus", (0, 0))
    if pid and processes.is_alive(pid, begun) and "prometheus" in state.urls:
        return state.urls["prometheus"]
    directory = state_dir / "prometheus"
    config_file = directory / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config(directory / "targets.json")))
    port = processes.free_port()
    url = f"http://127.0.0.1:{port}"
    state.ports["prometheus"] = port
    state.urls["prometheus"] = url
    processes.start(
        "prometheus",
        [
            str(binary),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={directory / 'data'}",
            "--storage.tsdb.retention.time=2h",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        state_dir,
        state,
    )
    log = state_dir / "logs" / "prometheus.log"
    wait_for("prometheus", lambda: requests.get(f"{url}/-/ready", timeout=1).ok, 30, log)
    return url


def query(url: str, promql: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Run an instant query and return Prometheus's result vector."""
    response = requests.get(f"{url}/api/v1/query", params={"query": promql}, timeout=timeout)
    body = response.json()
    if response.status_code != 200 or body.get("status") != "success":
        raise PrometheusError(f"query {promql!r} failed: {body.get('error', response.text)}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def query_scalar(url: str, promql: str) -> float | None:
    """The single value of a query, or None when it has no data yet."""
    result = query(url, promql)
    if not result:
        return None
    return float(result[0]["value"][1])

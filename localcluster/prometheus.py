"""Our own Prometheus instance: Debian's binary, our config, a free loopback port.

It scrapes the targets listed in file-based service discovery files, so tests can add a target
(a simulator, a Serin server over HTTPS) without restarting it. The scrape interval is short because tests
and the demo look at rates over a few seconds, not minutes.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import yaml

from localcluster import processes
from localcluster.processes import ClusterState
from serin import tls

SCRAPE_INTERVAL = "1s"
TARGETS = "targets.json"
SERIN_TARGETS = "serin-targets.json"
SERIN_CA = "serin-ca.crt"
# The bearer token Prometheus sends Serin: its /metrics asks for one whose account may get it.
SERIN_TOKEN = "serin-scrape.token"


class PrometheusError(RuntimeError):
    """A query failed or Prometheus did not answer."""


def config(directory: Path, scrape_interval: str = SCRAPE_INTERVAL) -> dict[str, Any]:
    """Plain-HTTP targets (the traffic simulator) in targets.json; Serin's servers, over HTTPS
    verified against the CA in serin-ca.crt and with the bearer token in serin-scrape.token (read
    anew for every scrape), in serin-targets.json."""
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [
            {
                "job_name": "local",
                "file_sd_configs": [{"files": [str(directory / TARGETS)], "refresh_interval": "1s"}],
            },
            {
                "job_name": "serin",
                "scheme": "https",
                "tls_config": {"ca_file": str(directory / SERIN_CA)},
                "authorization": {"type": "Bearer", "credentials_file": str(directory / SERIN_TOKEN)},
                "file_sd_configs": [{"files": [str(directory / SERIN_TARGETS)], "refresh_interval": "1s"}],
            },
        ],
    }


def _write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    tmp.replace(path)


def _targets(urls: list[str]) -> bytes:
    hosts = sorted({urlsplit(url).netloc for url in urls})
    return json.dumps([{"targets": hosts, "labels": {}}] if hosts else []).encode()


def set_targets(state_dir: Path, urls: list[str]) -> None:
    """Point Prometheus at these /metrics endpoints (it rereads the file within a second)."""
    _write_atomically(state_dir / "prometheus" / TARGETS, _targets(urls))


def scrape_serin(state_dir: Path, urls: list[str], ca_pem: bytes, token: str) -> None:
    """Have Prometheus scrape these Serin servers' /metrics, trusting ``ca_pem`` (it rereads the
    CA file when it changes) and sending ``token``, of an account that may get /metrics."""
    _write_atomically(state_dir / "prometheus" / SERIN_CA, ca_pem)
    _write_atomically(state_dir / "prometheus" / SERIN_TOKEN, token.encode(), mode=0o600)
    _write_atomically(state_dir / "prometheus" / SERIN_TARGETS, _targets(urls))


def ensure_prometheus(state_dir: Path, binary: Path, state: ClusterState, targets: list[str]) -> str:
    """Start Prometheus unless it runs; return its URL."""
    from localcluster.cluster import wait_for

    set_targets(state_dir, targets)
    pid, begun = state.processes.get("prometheus", (0, 0))
    if pid and processes.is_alive(pid, begun) and "prometheus" in state.urls:
        return state.urls["prometheus"]
    directory = state_dir / "prometheus"
    if not (directory / SERIN_CA).exists():
        # Prometheus refuses a configuration whose CA file is missing or no certificate; until a
        # Serin server is scraped, a CA that signed nothing (and no token) stands in.
        placeholder, _ = tls.new_ca("no-serin-yet", datetime.timedelta(days=1))
        scrape_serin(state_dir, [], tls.cert_pem(placeholder), "")
    config_file = directory / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config(directory)))
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

"""The local clusters of parallel test workers: how many fit, and ports they never share."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from localcluster import capacity, processes


@pytest.fixture
def fresh_bands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "_next_in_band", {})


@pytest.mark.parametrize(
    ("worker", "band"),
    [
        pytest.param("gw0", range(10000, 11500), id="first-worker"),
        pytest.param("gw3", range(14500, 16000), id="fourth-worker"),
    ],
)
def test_a_worker_draws_from_its_own_band(
    monkeypatch: pytest.MonkeyPatch, fresh_bands: None, worker: str, band: range
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    drawn = [processes.free_port() for _ in range(20)]
    assert all(port in band for port in drawn), drawn
    assert len(set(drawn)) == 20


def test_a_port_in_use_is_skipped(monkeypatch: pytest.MonkeyPatch, fresh_bands: None) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    first = processes.free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", first + 1))
        taken.listen()
        monkeypatch.setattr(processes, "_next_in_band", {11500: first + 1 - 11500})
        assert processes.free_port() == first + 2


@pytest.mark.parametrize("worker", ["", "gw15", "master"])
def test_without_a_band_the_kernel_chooses(monkeypatch: pytest.MonkeyPatch, fresh_bands: None, worker: str) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert low <= processes.free_port() <= high


@pytest.mark.parametrize(
    ("cores", "memory_gb", "workers"),
    [
        pytest.param(2, 24, 4, id="two-cores-plenty-of-memory"),
        pytest.param(16, 64, 8, id="capped"),
        pytest.param(8, 5, 2, id="memory-bound"),
        pytest.param(1, 1, 1, id="at-least-one"),
        pytest.param(1, 16, 3, id="one-core"),
    ],
)
def test_workers_fit_the_cores_and_the_memory(cores: int, memory_gb: int, workers: int) -> None:
    assert capacity.test_workers(cores, memory_gb * 1024**3) == workers

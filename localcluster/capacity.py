"""How many parallel test workers this machine holds: ``python -m localcluster.capacity`` prints it.

Each worker runs a control plane of its own (etcd, the API server, the controllers, Prometheus,
the simulator, Serin's servers): about 1.5 GB when busy. An integration test mostly waits for a
rollout, a scrape or an interval, so two more workers than there are cores keep the cores busy (on
2 cores: 3 workers took 11:22, 4 took 10:18).
``make TEST_WORKERS=N`` overrides the figure.
"""

from __future__ import annotations

import os
from pathlib import Path

MEMORY_PER_WORKER_BYTES = 2 * 1024**3
MAX_WORKERS = 8


def available_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return MEMORY_PER_WORKER_BYTES


def test_workers(cores: int | None = None, memory: int | None = None) -> int:
    cores = cores if cores is not None else len(os.sched_getaffinity(0))
    memory = memory if memory is not None else available_memory()
    return max(1, min(cores + 2, memory // MEMORY_PER_WORKER_BYTES, MAX_WORKERS))


if __name__ == "__main__":
    print(test_workers())

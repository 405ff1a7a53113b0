"""Start, record and stop the background processes of one local cluster.

Every process runs in its own session (so it outlives the command that started it) and is
recorded in ``<state>/state.json``; ``stop_all`` ends exactly those, first politely, then not.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
# What coverage.py's subprocess patch gives every Python child to trace it (make coverage).
COVERAGE_VARIABLES = ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START")


@dataclass
class ClusterState:
    """What ``up`` started: processes, ports, URLs and paths, each by name.

    A process is recorded as ``[pid, start time]``: a pid alone could by now belong to
    somebody else's process, and ``down`` must never signal that.
    """

    processes: dict[str, list[int]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    # How each process was started (command and extra environment), to start it again the same
    # way, on the same ports: fault tests stop a component and bring it back behind the same URL.
    commands: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, state_dir: Path) -> ClusterState:
        path = state_dir / STATE_FILE
        if not path.exists():
            return cls()
        data: dict[str, Any] = json.loads(path.read_text())
        return cls(
            processes={name: list(value) for name, value in data.get("processes", {}).items()},
            ports=dict(data.get("ports", {})),
            urls=dict(data.get("urls", {})),
            paths=dict(data.get("paths", {})),
            commands=dict(data.get("commands", {})),
        )

    def save(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = state_dir / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        tmp.replace(state_dir / STATE_FILE)


# Parallel test workers (pytest-xdist) each run a whole cluster, dozens of servers started at once.
# A port the kernel hands out for bind(0) may be handed to another worker before the first one's
# server binds it; so each worker draws from a band of its own, below the kernel's ephemeral range
# (32768 and up), where no outgoing connection takes a port either.
PORT_BANDS_START = 10000
PORT_BAND_SIZE = 1500
EPHEMERAL_PORTS_START = 32768
_WORKER = re.compile(r"gw(\d+)")
_next_in_band: dict[int, int] = {}


def _band() -> range | None:
    match = _WORKER.fullmatch(os.environ.get("PYTEST_XDIST_WORKER", ""))
    if match is None:
        return None
    start = PORT_BANDS_START + int(match.group(1)) * PORT_BAND_SIZE
    if start + PORT_BAND_SIZE > EPHEMERAL_PORTS_START:
        return None  # more workers than bands: the kernel's choice, as outside the tests
    return range(start, start + PORT_BAND_SIZE)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A port nobody listens on right now, on loopback only; under a test worker, one of its band
    that it has not handed out before (until the band wraps around)."""
    band = _band()
    if band is None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
            return port
    # A process of the worker's own (a CLI it runs) starts elsewhere in the band than the worker.
    offset = _next_in_band.setdefault(band.start, (os.getpid() * 7919) % len(band))
    for step in range(len(band)):
        candidate = band[(offset + step) % len(band)]
        if _bindable(candidate):
            _next_in_band[band.start] = (offset + step + 1) % len(band)
            return candidate
    raise RuntimeError(f"no free port in {band.start}-{band.stop - 1}")


def child_environment() -> dict[str, str]:
    # A proxy configured for the user's shell must never see loopback traffic between the
    # components (the API server would send webhook calls through it).
    env = dict(os.environ)
    # Python helpers (the traffic simulator) are started as `python -m localcluster...`.
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH", "")) if part
    )
    for name in ("NO_PROXY", "no_proxy"):
        existing = env.get(name, "")
        env[name] = ",".join(part for part in (existing, "127.0.0.1,localhost") if part)
    return env


def start(
    name: str,
    command: list[str],
    state_dir: Path,
    state: ClusterState,
    env: dict[str, str] | None = None,
    measured: bool = True,
) -> subprocess.Popen[bytes]:
    """Start ``command`` as the recorded process ``name``. ``measured=False``: a helper of the
    cluster (not Serin's code), which ``make coverage`` need not trace, and is slower traced."""
    log_dir = state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{name}.log", "ab") as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={
                variable: value
                for variable, value in {**child_environment(), **(env or {})}.items()
                if measured or variable not in COVERAGE_VARIABLES
            },
            cwd=Path(__file__).resolve().parent.parent,
            start_new_session=True,
        )
    state.processes[name] = [process.pid, start_time(process.pid)]
    state.commands[name] = {"command": list(command), "env": dict(env or {}), "measured": measured}
    state.save(state_dir)
    return process


def stop_one(name: str, state_dir: Path) -> bool:
    """Stop one recorded process (it stays recorded, to be started again); False if it was not running."""
    state = ClusterState.load(state_dir)
    pid, started = state.processes.get(name, (0, 0))
    if not pid or not is_alive(pid, started):
        return False
    stop(pid)
    return True


def start_again(name: str, state_dir: Path) -> subprocess.Popen[bytes]:
    """Start a stopped process exactly as it was started before (same command, same ports)."""
    state = ClusterState.load(state_dir)
    recorded = state.commands.get(name)
    if recorded is None:
        raise KeyError(f"no process {name!r} was started in {state_dir}")
    pid, started = state.processes.get(name, (0, 0))
    if pid and is_alive(pid, started):
        raise RuntimeError(f"{name} is running (pid {pid}): stop it first")
    return start(name, recorded["command"], state_dir, state, recorded["env"], recorded.get("measured", True))


def _proc_stat(pid: int) -> list[str] | None:
    try:
        # The command name in parentheses may contain spaces; the fields after it do not.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> int:
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else 0


def is_alive(pid: int, started: int | None = None) -> bool:
    """True while ``pid`` runs (not a zombie) and, if given, is the process that started then."""
    fields = _proc_stat(pid)
    if fields is None or fields[0] == "Z":
        return False
    return started is None or int(fields[19]) == started


def stop(pid: int, timeout: float = 10.0) -> None:
    """Terminate the process group of ``pid`` and wait until it is gone."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Reap it if it is our own child; otherwise just watch it disappear.
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not is_alive(pid):
                return
            time.sleep(0.05)


def stop_all(state_dir: Path) -> list[str]:
    """Stop every recorded process, newest first (dependents before what they depend on)."""
    state = ClusterState.load(state_dir)
    stopped = []
    for name, (pid, started) in reversed(list(state.processes.items())):
        if is_alive(pid, started):
            stop(pid)
            stopped.append(name)
        del state.processes[name]
        state.save(state_dir)
    return stopped

"""Argo CD's health check and resource actions for Serin's Canary (integrations/argocd), run by a
real Lua interpreter against recorded Canaries, as Argo CD's own tests run its built-in ones
(``health_test.yaml``, ``actions/action_test.yaml``).

The recorded Canaries (the ``testdata`` folders beside the scripts) carry statuses made by Serin's
own code (``RECORDED`` below), and a test checks that each file still holds what the code makes:
the expectations cannot drift from what Serin stores. When Serin's status changes, write them
again, with ``integrations/argocd/argocd-cm.yaml`` from the scripts, and review the diff:

    .venv/bin/python -m tests.unit.test_argocd_health

The scripts run under ``lua5.4`` (on PATH, or the one ``localcluster.build.unpack_lua`` unpacks
into the cache; ``make build`` does) in ``argocd_harness.lua``, which gives them only what Argo CD
gives them. Without an interpreter the tests that need one skip, except with ``CI=true``: there
they fail.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster.build import LUA_COMMAND, BuildError, cached_lua, deb_version, lua_wrapper, unpack_lua
from localcluster.paths import REPO_ROOT, cache_dir
from localcluster.testing import in_ci
from serin.model import REQUEST_ANNOTATION, ManualRequest
from serin.status import CanaryStatus, MetricCheck, Phase
from serin.workloads import template_hash

INTEGRATION = REPO_ROOT / "integrations" / "argocd"
CANARY = INTEGRATION / "serin.dev" / "Canary"
ACTIONS = CANARY / "actions"
CONFIGMAP = INTEGRATION / "argocd-cm.yaml"
HARNESS = Path(__file__).with_name("argocd_harness.lua")
ACTION_NAMES = ("promote", "abort", "retry", "pause", "resume")
HEALTH_KEY = "resource.customizations.health.serin.dev_Canary"
ACTIONS_KEY = "resource.customizations.actions.serin.dev_Canary"


# ---- the recorded Canaries ------------------------------------------------------------------

WHEN = datetime.datetime(2026, 5, 4, 10, 0, tzinfo=datetime.UTC)


def _deployment(version: str) -> dict[str, Any]:
    container = {"name": "podinfod", "image": f"ghcr.io/stefanprodan/podinfo:{version}"}
    return {"spec": {"template": {"metadata": {"labels": {"app": "podinfo"}}, "spec": {"containers": [container]}}}}


# The revisions as Serin names them: the one the primary runs, the one under analysis.
PROMOTED = template_hash(_deployment("6.0.0"))
RELEASED = template_hash(_deployment("6.0.1"))
SPEC: Mapping[str, Any] = {
    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
    "progressDeadlineSeconds": 120,
    "service": {"port": 9898},
    "analysis": {
        "interval": "1m",
        "threshold": 5,
        "stepWeight": 10,
        "maxWeight": 50,
        "metrics": [
            {"name": "request-success-rate", "interval": "1m", "thresholdRange": {"min": 99}},
            {"name": "request-duration", "interval": "1m", "thresholdRange": {"max": 500}},
        ],
    },
}
TRACKING = {"argocd.argoproj.io/tracking-id": "podinfo:serin.dev/Canary:test/podinfo"}

PASSED_CHECKS = (
    MetricCheck("request-success-rate", 99.5, True, "request-success-rate 99.5 >= 99: passed"),
    MetricCheck("request-duration", 120.0, True, "request-duration 120 <= 500: passed"),
)
FAILED_CHECKS = (
    MetricCheck("request-success-rate", 87.5, False, "Halt podinfo.test advancement success rate 87.50% < 99%"),
    MetricCheck("request-duration", 120.0, True, "request-duration 120 <= 500: passed"),
)
AT_REST: Mapping[str, Any] = {"last_applied_spec": PROMOTED, "last_promoted_spec": PROMOTED}
RELEASE: Mapping[str, Any] = {"last_applied_spec": RELEASED, "last_promoted_spec": PROMOTED}
STEPPED: Mapping[str, Any] = {
    **RELEASE,
    "last_analysis_time": WHEN,
    "traffic_since": WHEN - datetime.timedelta(minutes=1),
}
PROGRESSING: Mapping[str, Any] = {**STEPPED, "canary_weight": 20, "failed_checks": 1, "checks": FAILED_CHECKS}
WAITING_PROMOTION: Mapping[str, Any] = {**STEPPED, "canary_weight": 50, "checks": PASSED_CHECKS}
FAILED: Mapping[str, Any] = {**STEPPED, "failed_checks": 5, "checks": FAILED_CHECKS}
SUCCEEDED: Mapping[str, Any] = {**STEPPED, "checks": PASSED_CHECKS, "last_promoted_spec": RELEASED}
# Initialization failed: no revision was ever promoted.
FAILED_INITIALIZATION: Mapping[str, Any] = {"last_applied_spec": PROMOTED}


@dataclass(frozen=True)
class Recorded:
    """A Canary as the API server serves it, whose status is what Serin stores in ``phase`` (none
    yet: ``None``) after ``changes`` (fields of CanaryStatus)."""

    phase: Phase | None
    changes: Mapping[str, Any] = field(default_factory=dict)
    has_status: bool = True
    generation: int = 1
    # The generation the status is of; None: the current one.
    observed: int | None = None
    suspend: bool | None = None
    request: ManualRequest | None = None
    # Applied by Argo CD, it carries Argo CD's tracking annotation.
    tracked: bool = True
    # A phase Serin's code does not know (a newer Serin's), stored in place of ``phase``.
    stored_phase: str | None = None

    def status(self) -> dict[str, Any] | None:
        if not self.has_status:
            return None
        status = CanaryStatus() if self.phase is None else CanaryStatus().with_phase(self.phase, WHEN)
        observed = self.generation if self.observed is None else self.observed
        stored = status.replace(observed_generation=observed, **self.changes).to_dict()
        if self.stored_phase is not None:
            stored["phase"] = self.stored_phase
        return stored

    def canary(self) -> dict[str, Any]:
        annotations = dict(TRACKING) if self.tracked else {}
        if self.request is not None:
            annotations[REQUEST_ANNOTATION] = self.request.value
        metadata: dict[str, Any] = {
            "name": "podinfo",
            "namespace": "test",
            "generation": self.generation,
            "uid": "8c4e0bd5-2f5b-4a8e-9d1e-3b8f2f6c1a7e",
            "resourceVersion": "48213",
            "creationTimestamp": "2026-05-04T09:30:00Z",
        }
        if annotations:
            metadata["annotations"] = annotations
        spec = dict(SPEC)
        if self.suspend is not None:
            spec["suspend"] = self.suspend
        canary = {"apiVersion": "serin.dev/v1beta1", "kind": "Canary", "metadata": metadata, "spec": spec}
        status = self.status()
        if status is not None:
            canary["status"] = status
        return canary


# Every file of both testdata folders, by its path under integrations/argocd/serin.dev/Canary.
RECORDED: Mapping[str, Recorded] = {
    "testdata/no-status.yaml": Recorded(None, has_status=False),
    "testdata/no-phase.yaml": Recorded(None),
    "testdata/initializing.yaml": Recorded(Phase.INITIALIZING),
    "testdata/initialized.yaml": Recorded(Phase.INITIALIZED, AT_REST),
    "testdata/waiting.yaml": Recorded(Phase.WAITING, RELEASE),
    "testdata/progressing.yaml": Recorded(Phase.PROGRESSING, PROGRESSING),
    "testdata/waiting-promotion.yaml": Recorded(Phase.WAITING_PROMOTION, WAITING_PROMOTION),
    "testdata/promotion-requested.yaml": Recorded(
        Phase.WAITING_PROMOTION, WAITING_PROMOTION, request=ManualRequest.PROMOTE
    ),
    "testdata/promoting.yaml": Recorded(Phase.PROMOTING, WAITING_PROMOTION),
    "testdata/finalising.yaml": Recorded(Phase.FINALISING, {**WAITING_PROMOTION, "canary_weight": 0}),
    "testdata/succeeded.yaml": Recorded(Phase.SUCCEEDED, SUCCEEDED),
    "testdata/failed.yaml": Recorded(Phase.FAILED, FAILED),
    "testdata/terminating.yaml": Recorded(Phase.TERMINATING, AT_REST),
    "testdata/terminated.yaml": Recorded(Phase.TERMINATED, AT_REST),
    # Paused after the spec changed, and Serin has seen it.
    "testdata/suspended.yaml": Recorded(Phase.PROGRESSING, PROGRESSING, generation=2, suspend=True),
    # Paused before its first tick: Serin records the generation it saw, and no phase.
    "testdata/suspended-new.yaml": Recorded(None, suspend=True),
    "testdata/suspended-failed.yaml": Recorded(Phase.FAILED, FAILED, generation=2, suspend=True),
    # The spec was changed since Serin last wrote the status.
    "testdata/stale-generation.yaml": Recorded(Phase.SUCCEEDED, SUCCEEDED, generation=3, observed=2),
    "testdata/unknown-phase.yaml": Recorded(Phase.SUCCEEDED, AT_REST, stored_phase="Rebalancing"),
    "actions/testdata/no-status.yaml": Recorded(None, has_status=False),
    "actions/testdata/progressing.yaml": Recorded(Phase.PROGRESSING, PROGRESSING),
    "actions/testdata/progressing-abort.yaml": Recorded(Phase.PROGRESSING, PROGRESSING, request=ManualRequest.ABORT),
    "actions/testdata/progressing-paused.yaml": Recorded(Phase.PROGRESSING, PROGRESSING, suspend=True),
    "actions/testdata/progressing-resumed.yaml": Recorded(Phase.PROGRESSING, PROGRESSING, suspend=False),
    "actions/testdata/untracked-progressing.yaml": Recorded(Phase.PROGRESSING, PROGRESSING, tracked=False),
    "actions/testdata/untracked-progressing-promote.yaml": Recorded(
        Phase.PROGRESSING, PROGRESSING, tracked=False, request=ManualRequest.PROMOTE
    ),
    "actions/testdata/waiting.yaml": Recorded(Phase.WAITING, RELEASE),
    "actions/testdata/waiting-promotion.yaml": Recorded(Phase.WAITING_PROMOTION, WAITING_PROMOTION),
    "actions/testdata/waiting-promotion-promote.yaml": Recorded(
        Phase.WAITING_PROMOTION, WAITING_PROMOTION, request=ManualRequest.PROMOTE
    ),
    "actions/testdata/waiting-promotion-abort.yaml": Recorded(
        Phase.WAITING_PROMOTION, WAITING_PROMOTION, request=ManualRequest.ABORT
    ),
    "actions/testdata/succeeded.yaml": Recorded(Phase.SUCCEEDED, SUCCEEDED),
    "actions/testdata/failed.yaml": Recorded(Phase.FAILED, FAILED),
    "actions/testdata/failed-retry.yaml": Recorded(Phase.FAILED, FAILED, request=ManualRequest.RETRY),
    "actions/testdata/failed-paused.yaml": Recorded(Phase.FAILED, FAILED, suspend=True),
    "actions/testdata/failed-initialization.yaml": Recorded(Phase.FAILED, FAILED_INITIALIZATION),
}


def recorded_text(recorded: Recorded) -> str:
    # Sorted keys, as `kubectl get -o yaml` writes an object.
    return yaml.safe_dump(recorded.canary(), sort_keys=True, default_flow_style=False)


def _indented(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line if line.strip() else "\n" for line in text.splitlines(keepends=True))


def configmap_text() -> str:
    """integrations/argocd/argocd-cm.yaml: the scripts as keys of Argo CD's argocd-cm."""
    definitions = "".join(
        f"      - name: {name}\n        action.lua: |\n{_indented((ACTIONS / name / 'action.lua').read_text(), 10)}"
        for name in ACTION_NAMES
    )
    return (
        "# Argo CD's health check and resource actions for Serin's Canary, as keys of Argo CD's argocd-cm\n"
        "# ConfigMap. Add them to it (its other keys are left as they are):\n"
        "#\n"
        "#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file integrations/argocd/argocd-cm.yaml\n"
        "#\n"
        "# The scripts are the files of serin.dev/Canary beside this one; tests/unit/test_argocd_health.py\n"
        "# checks that they are the same (`.venv/bin/python -m tests.unit.test_argocd_health` writes this\n"
        "# file from them).\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: argocd-cm\n"
        "data:\n"
        f"  {HEALTH_KEY}: |\n"
        f"{_indented((CANARY / 'health.lua').read_text(), 4)}"
        f"  {ACTIONS_KEY}: |\n"
        "    discovery.lua: |\n"
        f"{_indented((ACTIONS / 'discovery.lua').read_text(), 6)}"
        "    definitions:\n"
        f"{definitions}"
    )


def write_generated() -> None:
    """Write the testdata files and argocd-cm.yaml again (stale testdata files are removed)."""
    for folder in (CANARY / "testdata", ACTIONS / "testdata"):
        for stale in folder.glob("*.yaml"):
            if str(stale.relative_to(CANARY)) not in RECORDED:
                stale.unlink()
    for name, recorded in RECORDED.items():
        (CANARY / name).parent.mkdir(parents=True, exist_ok=True)
        (CANARY / name).write_text(recorded_text(recorded))
    CONFIGMAP.write_text(configmap_text())


# ---- reading and running as Argo CD does ----------------------------------------------------


class _KubernetesLoader(yaml.SafeLoader):
    """YAML as Kubernetes reads it into an object: a timestamp is a string, not a datetime."""


_KubernetesLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=_KubernetesLoader)


def lua_string(text: str) -> str:
    """A Lua string literal of ``text``'s UTF-8 bytes: printable ASCII as it is, every other byte
    (and the quote and backslash) as a three-digit decimal escape, which Lua 5.1 and 5.4 read alike
    whatever follows it."""
    printable = range(0x20, 0x7F)
    return (
        '"'
        + "".join(chr(byte) if byte in printable and byte not in b'"\\' else f"\\{byte:03d}" for byte in text.encode())
        + '"'
    )


def lua_literal(value: Any) -> str:
    """A Lua expression of a decoded JSON or YAML value. A member that is null is left out (Argo CD
    sets it to nil, which is the same); a null in a list has no Lua equivalent."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not -(2**63) < value < 2**63:
            raise ValueError(f"{value} is beyond Lua's integers")
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a JSON number")
        return repr(value)  # always with a point or an exponent: a float in Lua too
    if isinstance(value, str):
        return lua_string(value)
    if isinstance(value, list):
        if any(item is None for item in value):
            raise ValueError("a null in a list cannot be a Lua table's item")
        return "{" + ", ".join(lua_literal(item) for item in value) + "}"
    if isinstance(value, dict):
        members = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"a key of a Kubernetes object is a string, not {key!r}")
            if item is not None:
                members.append(f"[{lua_string(key)}] = {lua_literal(item)}")
        return "{" + ", ".join(members) + "}"
    raise TypeError(f"not a JSON value: {value!r}")


class LuaError(RuntimeError):
    """The script did not load or failed; the message is the interpreter's."""


def run_script(lua: Path, script: Path, obj: Mapping[str, Any]) -> Any:
    """What ``script`` returns for ``obj``, decoded from the harness's JSON."""
    ran = subprocess.run(
        [str(lua), str(HARNESS), str(script)],
        input="return " + lua_literal(obj),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )
    if ran.returncode != 0:
        raise LuaError(f"{script.name} failed (exit {ran.returncode}): {ran.stderr.strip()}")
    return json.loads(ran.stdout)


def cleaned(new: Any, old: Any) -> Any:
    """An action's result as Argo CD patches it: Lua cannot tell an empty object from an empty
    array, so an empty array where the object had an object is an empty object again (Argo CD's
    ``cleanReturnedObj``)."""
    if isinstance(new, dict) and isinstance(old, dict):
        return {key: cleaned(value, old[key]) if key in old else value for key, value in new.items()}
    if isinstance(new, list) and isinstance(old, dict) and not new:
        return {}
    if isinstance(new, list) and isinstance(old, list):
        return [cleaned(item, old[index]) if index < len(old) else item for index, item in enumerate(new)]
    return new


@pytest.fixture(scope="session")
def lua() -> Path:
    found = shutil.which(LUA_COMMAND) or cached_lua(cache_dir())
    if found is None:
        if in_ci():
            pytest.fail(f"no {LUA_COMMAND} to run Argo CD's scripts with: `make build` unpacks Debian's into the cache")
        pytest.skip(
            f"no {LUA_COMMAND}: install it, or unpack Debian's into the cache with "
            "`.venv/bin/python -c 'from localcluster.build import unpack_lua; "
            "from localcluster.paths import cache_dir; unpack_lua(cache_dir())'`"
        )
    return Path(found)


def _tests(path: Path, key: str) -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = load_yaml(path)[key]
    return tests


HEALTH_TESTS = _tests(CANARY / "health_test.yaml", "tests")
DISCOVERY_TESTS = _tests(ACTIONS / "action_test.yaml", "discoveryTests")
ACTION_TESTS = _tests(ACTIONS / "action_test.yaml", "actionTests")


# ---- the recorded Canaries are what Serin stores --------------------------------------------


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_testdata_holds_what_serin_stores(name: str) -> None:
    recorded = RECORDED[name]
    stored = load_yaml(CANARY / name)
    regenerate = "write it again: .venv/bin/python -m tests.unit.test_argocd_health"
    assert stored.get("status") == recorded.status(), f"{name}: not the status Serin's code makes; {regenerate}"
    assert stored == recorded.canary(), f"{name}: not the recorded Canary; {regenerate}"


def test_every_testdata_file_is_recorded_and_used() -> None:
    on_disk = {str(path.relative_to(CANARY)) for path in CANARY.glob("**/testdata/*.yaml")}
    assert on_disk == set(RECORDED)
    used = {test["inputPath"] for test in HEALTH_TESTS}
    for test in [*DISCOVERY_TESTS, *ACTION_TESTS]:
        used |= {f"actions/{test[key]}" for key in ("inputPath", "expectedOutputPath") if key in test}
    assert used == set(RECORDED)


def test_every_action_has_a_script_and_a_test() -> None:
    assert sorted(path.parent.name for path in ACTIONS.glob("*/action.lua")) == sorted(ACTION_NAMES)
    assert {test["action"] for test in ACTION_TESTS} == set(ACTION_NAMES)


# ---- the scripts, run --------------------------------------------------------------------------


@pytest.mark.parametrize("test", HEALTH_TESTS, ids=[test["inputPath"] for test in HEALTH_TESTS])
def test_health(lua: Path, test: Mapping[str, Any]) -> None:
    result = run_script(lua, CANARY / "health.lua", load_yaml(CANARY / test["inputPath"]))
    assert result == test["healthStatus"]


@pytest.mark.parametrize("test", DISCOVERY_TESTS, ids=[test["inputPath"] for test in DISCOVERY_TESTS])
def test_discovery(lua: Path, test: Mapping[str, Any]) -> None:
    result = run_script(lua, ACTIONS / "discovery.lua", load_yaml(ACTIONS / test["inputPath"]))
    # As Argo CD reads it: an action without "disabled" is enabled.
    found = sorted(
        ({"name": name, **action, "disabled": action.get("disabled", False)} for name, action in result.items()),
        key=str,
    )
    expected = sorted(({**action, "disabled": action.get("disabled", False)} for action in test["result"]), key=str)
    assert found == expected


@pytest.mark.parametrize("test", ACTION_TESTS, ids=[f"{test['action']}:{test['inputPath']}" for test in ACTION_TESTS])
def test_action(lua: Path, test: Mapping[str, Any]) -> None:
    before = load_yaml(ACTIONS / test["inputPath"])
    after = run_script(lua, ACTIONS / test["action"] / "action.lua", before)
    assert cleaned(after, before) == load_yaml(ACTIONS / test["expectedOutputPath"])


# ---- the harness ------------------------------------------------------------------------------

AWKWARD = {
    "quotes": "say \"hi\" and 'bye' \\ back\\slash",
    "lines": "one\ntwo\r\n\tthree\x00four\x7f",
    "escape then digits": "\x01" + "234",
    "long brackets": "]] [[ ]=] -- not a comment",
    "unicode": "ünïcødé ☃ 🚀",
    "numbers": [0, -1, 2**53, 1.5, -0.25, 1e16],
    "empty": {"object": {}, "list": []},
    "nested": [{"a": [True, False]}, ["x", ["y"]]],
}


def test_objects_reach_the_script_as_they_are(lua: Path, tmp_path: Path) -> None:
    identity = tmp_path / "identity.lua"
    identity.write_text("return obj\n")
    assert cleaned(run_script(lua, identity, AWKWARD), AWKWARD) == AWKWARD


@pytest.mark.parametrize(
    "script",
    ['return {status = ("Healthy"):lower()}', 'return {status = string.format("%s", "Healthy")}', "return math.huge"],
)
def test_scripts_get_no_more_of_lua_than_argo_cd_gives(lua: Path, tmp_path: Path, script: str) -> None:
    path = tmp_path / "script.lua"
    path.write_text(script + "\n")
    with pytest.raises(LuaError):
        run_script(lua, path, {"metadata": {}})


def test_configmap_embeds_the_scripts() -> None:
    data = load_yaml(CONFIGMAP)["data"]
    assert set(data) == {HEALTH_KEY, ACTIONS_KEY}
    assert data[HEALTH_KEY] == (CANARY / "health.lua").read_text()
    actions = yaml.safe_load(data[ACTIONS_KEY])
    assert actions["discovery.lua"] == (ACTIONS / "discovery.lua").read_text()
    assert [definition["name"] for definition in actions["definitions"]] == list(ACTION_NAMES)
    for definition in actions["definitions"]:
        assert definition["action.lua"] == (ACTIONS / definition["name"] / "action.lua").read_text()


# ---- unpacking Debian's interpreter -----------------------------------------------------------


def test_deb_version() -> None:
    assert deb_version("lua5.4_5.4.4-3+deb12u1_amd64.deb") == "5.4.4-3+deb12u1"
    assert deb_version("libreadline8_8.2-1.3_arm64.deb") == "8.2-1.3"
    for name in ("lua5.4.deb", "lua5.4_5.4.4_amd64_extra.deb", "lua5.4__amd64.deb"):
        with pytest.raises(BuildError):
            deb_version(name)


def test_the_wrapper_runs_the_unpacked_binary_with_the_unpacked_libraries(tmp_path: Path) -> None:
    unpacked = tmp_path / "lua5.4-5.4.4-1"
    (unpacked / "usr" / "bin").mkdir(parents=True)
    fake = unpacked / "usr" / "bin" / "lua5.4"
    fake.write_text('#!/bin/sh\necho "$LD_LIBRARY_PATH"\nfor word in "$@"; do echo "[$word]"; done\n')
    fake.chmod(0o755)
    wrapper = unpacked / "lua5.4"
    wrapper.write_text(lua_wrapper("usr/bin/lua5.4", ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu")))
    wrapper.chmod(0o755)
    moved = unpacked.rename(tmp_path / "moved")  # the paths are relative to the wrapper's folder

    def run(environment: Mapping[str, str]) -> list[str]:
        ran = subprocess.run(
            [str(moved / "lua5.4"), "-e", "print('a b')"], env=environment, capture_output=True, text=True, check=True
        )
        return ran.stdout.splitlines()

    here = moved.resolve()
    ours = f"{here}/lib/x86_64-linux-gnu:{here}/usr/lib/x86_64-linux-gnu"
    without = {key: value for key, value in os.environ.items() if key != "LD_LIBRARY_PATH"}
    # No empty entry when nothing was set before: that would mean the current folder.
    assert run(without) == [ours, "[-e]", "[print('a b')]"]
    assert run({**without, "LD_LIBRARY_PATH": "/elsewhere"})[0] == f"{ours}:/elsewhere"


def test_the_newest_unpacked_interpreter_is_found(tmp_path: Path) -> None:
    assert cached_lua(tmp_path) is None
    for folder in ("lua5.4-5.4.4-3", "lua5.4-5.4.6-1", ".lua5.4-5.4.7-1.tmp"):
        (tmp_path / "bin" / folder).mkdir(parents=True)
        (tmp_path / "bin" / folder / "lua5.4").write_text("")
    assert cached_lua(tmp_path) == tmp_path / "bin" / "lua5.4-5.4.6-1" / "lua5.4"


def test_an_unpacked_interpreter_is_not_fetched_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bin" / "lua5.4-5.4.4-3").mkdir(parents=True)
    (tmp_path / "bin" / "lua5.4-5.4.4-3" / "lua5.4").write_text("")

    def no_command(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"ran {args}")

    monkeypatch.setattr(subprocess, "run", no_command)
    assert unpack_lua(tmp_path) == tmp_path / "bin" / "lua5.4-5.4.4-3" / "lua5.4"


if __name__ == "__main__":
    write_generated()

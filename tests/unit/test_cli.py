"""The command line's parsing and printing (the commands themselves: tests/integration/test_cli.py)."""

from __future__ import annotations

import datetime
import io
from typing import Any

import pytest

from serin.cli import CliError, Target, parse_target, replay_text, run, status_rows, table, tick_text
from serin.timeline import age

NOW = datetime.datetime(2026, 11, 28, 12, 0, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("text", "namespace", "everywhere", "target"),
    [
        pytest.param("shop/podinfo", "default", False, Target("shop", "podinfo"), id="namespace-and-name"),
        pytest.param("podinfo", "shop", False, Target("shop", "podinfo"), id="name-in-the-namespace"),
        pytest.param(None, "shop", False, Target("shop", None), id="every-canary-of-the-namespace"),
        pytest.param(None, "shop", True, Target(None, None), id="everywhere"),
    ],
)
def test_parse_target(text: str | None, namespace: str, everywhere: bool, target: Target) -> None:
    assert parse_target(text, namespace, everywhere) == target


@pytest.mark.parametrize("text", ["a/b/c", "/podinfo", "shop/"])
def test_a_malformed_name_says_how_to_write_one(text: str) -> None:
    with pytest.raises(CliError, match=f"name a Canary as NAME or NAMESPACE/NAME, not {text!r}"):
        parse_target(text, "default")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59, "59s"), (60, "1m"), (3599, "59m"), (3600, "1h"), (86399, "23h"), (172800, "2d"), (-5, "0s")],
)
def test_age_as_kubectl_prints_it(seconds: int, text: str) -> None:
    assert age(NOW - datetime.timedelta(seconds=seconds), NOW) == text


def canary(namespace: str, name: str, status: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name, **metadata}, "spec": {}, "status": status}


def test_status_table_lists_phase_weight_request_and_the_last_checks() -> None:
    canaries = [
        canary(
            "shop",
            "web",
            {
                "phase": "Progressing",
                "canaryWeight": 20,
                "failedChecks": 1,
                "lastTransitionTime": "2026-11-28T11:57:00Z",
                "checks": [
                    {"name": "request-success-rate", "value": 99.25, "result": "Passed", "message": "ok"},
                    {"name": "request-duration", "result": "Unavailable", "message": "down"},
                ],
            },
            annotations={"serin.dev/request": "promote"},
        ),
        canary("default", "api", {"phase": "Succeeded", "lastTransitionTime": "2026-11-28T10:00:00Z"}),
    ]
    assert table(status_rows(canaries, NOW)).splitlines() == [
        "NAMESPACE   NAME   STATUS        WEIGHT   FAILED   LAST TRANSITION   REQUEST   METRICS",
        "default     api    Succeeded     0        0        2h                -         -",
        "shop        web    Progressing   20       1        3m                promote   "
        "request-success-rate=99.25 ok, request-duration=- unavailable",
    ]


def test_a_release_group_is_listed_as_one_release_with_its_members_under_it() -> None:
    def member(name: str, phase: str, weight: int = 0) -> dict[str, Any]:
        grouped = canary(
            "shop", name, {"phase": phase, "canaryWeight": weight, "lastTransitionTime": "2026-11-28T11:59:00Z"}
        )
        grouped["spec"] = {"group": "checkout"}
        return grouped

    canaries = [
        member("worker", "Succeeded"),
        canary("shop", "cart", {"phase": "Succeeded", "lastTransitionTime": "2026-11-28T10:00:00Z"}),
        member("frontend", "WaitingPromotion", 40),
        member("api", "Progressing", 20),
        canary("shop", "zoo", {"phase": "Failed", "lastTransitionTime": "2026-11-28T10:00:00Z"}),
    ]
    assert table(status_rows(canaries, NOW)).splitlines() == [
        "NAMESPACE   NAME                    STATUS             WEIGHT   FAILED   LAST TRANSITION   REQUEST   METRICS",
        "shop        cart                    Succeeded          0        0        2h                -         -",
        # The group is as far as its least advanced member.
        "shop        checkout (group of 3)   Progressing        -        -        -                 -         -",
        "shop          api                   Progressing        20       0        1m                -         -",
        "shop          frontend              WaitingPromotion   40       0        1m                -         -",
        "shop          worker                Succeeded          0        0        1m                -         -",
        "shop        zoo                     Failed             0        0        2h                -         -",
    ]


def test_tick_text_shows_each_step_and_what_it_did() -> None:
    answer = {
        "canaries": [
            {
                "namespace": "shop",
                "name": "web",
                "phase": "Progressing",
                "weight": 40,
                "summary": "canary weight 40",
                "events": ["Advance web.shop canary weight 40"],
                "metrics": [{"message": "request-success-rate 100 >= 99: passed"}],
                "actions": ["SetRoutes(primary_weight=60, canary_weight=40, mirror=False)"],
            },
            {"namespace": "shop", "name": "bad", "phase": None, "weight": 0, "error": "invalid canary: x"},
        ]
    }
    assert tick_text(answer).splitlines() == [
        "NAMESPACE   NAME   PHASE         WEIGHT   SUMMARY",
        "shop        web    Progressing   40       canary weight 40",
        "shop        bad    -             0        error: invalid canary: x",
        "shop/web:",
        "  event: Advance web.shop canary weight 40",
        "  metric: request-success-rate 100 >= 99: passed",
        "  action: SetRoutes(primary_weight=60, canary_weight=40, mirror=False)",
    ]
    assert tick_text({"canaries": []}) == "no canary"


def test_replay_text_is_a_timeline_and_the_outcome() -> None:
    answer = {
        "canary": "shop/web",
        "modified": True,
        "from": "2026-11-28T10:00:00Z",
        "to": "2026-11-28T10:02:00Z",
        "outcome": "rolled back",
        "phase": "Failed",
        "steps": [
            {"time": "2026-11-28T10:00:00Z", "phase": "Progressing", "weight": 0, "failedChecks": 0, "summary": "s1"},
            {"time": "2026-11-28T10:01:00Z", "phase": "Failed", "weight": 0, "failedChecks": 0, "summary": "s2"},
        ],
    }
    assert replay_text(answer).splitlines() == [
        "replay of shop/web with the modified spec from 2026-11-28T10:00:00Z to 2026-11-28T10:02:00Z",
        "TIME                   PHASE         WEIGHT   FAILED   SUMMARY",
        "2026-11-28T10:00:00Z   Progressing   0        0        s1",
        "2026-11-28T10:01:00Z   Failed        0        0        s2",
        "outcome: rolled back (phase Failed)",
    ]


def test_a_missing_kubeconfig_is_one_line_and_status_1(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    assert run(["status", "--kubeconfig", str(tmp_path / "none")], out) == 1
    assert capsys.readouterr().err.startswith("serin: cannot load the kubeconfig: ")
    assert out.getvalue() == ""

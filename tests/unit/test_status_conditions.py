"""kstatus's conditions (Ready, Reconciling, Stalled) as the phase moves: what GitOps tools and
``kubectl wait --for=condition=Ready`` read."""

from __future__ import annotations

import datetime

import pytest

from serin.status import CanaryStatus, Phase

NOW = datetime.datetime(2026, 12, 7, 10, 0, tzinfo=datetime.UTC)
LATER = NOW + datetime.timedelta(minutes=1)


def conditions(status: CanaryStatus) -> list[tuple[str, str, str]]:
    return [(c["type"], c["status"], c["reason"]) for c in status.to_dict()["conditions"]]


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        (
            Phase.INITIALIZING,
            [
                ("Promoted", "Unknown", "Initializing"),
                ("Ready", "False", "Initializing"),
                ("Reconciling", "True", "Initializing"),
            ],
        ),
        (Phase.INITIALIZED, [("Promoted", "True", "Initialized"), ("Ready", "True", "Initialized")]),
        (
            Phase.WAITING,
            [("Promoted", "Unknown", "Waiting"), ("Ready", "False", "Waiting"), ("Reconciling", "True", "Waiting")],
        ),
        (
            Phase.PROGRESSING,
            [
                ("Promoted", "Unknown", "Progressing"),
                ("Ready", "False", "Progressing"),
                ("Reconciling", "True", "Progressing"),
            ],
        ),
        (
            Phase.WAITING_PROMOTION,
            [
                ("Promoted", "Unknown", "WaitingPromotion"),
                ("Ready", "False", "WaitingPromotion"),
                ("Reconciling", "True", "WaitingPromotion"),
            ],
        ),
        (
            Phase.PROMOTING,
            [
                ("Promoted", "Unknown", "Promoting"),
                ("Ready", "False", "Promoting"),
                ("Reconciling", "True", "Promoting"),
            ],
        ),
        (
            Phase.FINALISING,
            [
                ("Promoted", "Unknown", "Finalising"),
                ("Ready", "False", "Finalising"),
                ("Reconciling", "True", "Finalising"),
            ],
        ),
        (Phase.SUCCEEDED, [("Promoted", "True", "Succeeded"), ("Ready", "True", "Succeeded")]),
        (Phase.FAILED, [("Promoted", "False", "Failed"), ("Ready", "False", "Failed"), ("Stalled", "True", "Failed")]),
        (
            Phase.TERMINATING,
            [
                ("Promoted", "Unknown", "Terminating"),
                ("Ready", "False", "Terminating"),
                ("Reconciling", "True", "Terminating"),
            ],
        ),
        (Phase.TERMINATED, [("Promoted", "Unknown", "Terminated"), ("Ready", "False", "Terminated")]),
    ],
)
def test_each_phase_has_the_conditions_kstatus_defines(phase: Phase, expected: list[tuple[str, str, str]]) -> None:
    assert conditions(CanaryStatus().with_phase(phase, NOW)) == expected


def test_the_conditions_carry_the_generation_the_status_reflects() -> None:
    stored = CanaryStatus(observed_generation=7).with_phase(Phase.SUCCEEDED, NOW).to_dict()
    assert [c.get("observedGeneration") for c in stored["conditions"]] == [None, 7]


def test_ready_keeps_its_transition_time_while_it_stays_false() -> None:
    failed = CanaryStatus().with_phase(Phase.PROGRESSING, NOW).with_phase(Phase.FAILED, LATER)
    by_type = {c["type"]: c for c in failed.to_dict()["conditions"]}
    # Promoted went from Unknown to False; Ready was False all along.
    assert by_type["Promoted"]["lastTransitionTime"] == "2026-12-07T10:01:00Z"
    assert by_type["Ready"]["lastTransitionTime"] == "2026-12-07T10:00:00Z"
    assert by_type["Ready"]["lastUpdateTime"] == "2026-12-07T10:01:00Z"
    assert by_type["Stalled"]["lastTransitionTime"] == "2026-12-07T10:01:00Z"
    assert "Reconciling" not in by_type


def test_a_new_release_after_a_rollback_is_reconciling_and_no_longer_stalled() -> None:
    again = CanaryStatus().with_phase(Phase.FAILED, NOW).with_phase(Phase.PROGRESSING, LATER)
    assert conditions(again) == [
        ("Promoted", "Unknown", "Progressing"),
        ("Ready", "False", "Progressing"),
        ("Reconciling", "True", "Progressing"),
    ]


def test_the_conditions_survive_a_round_trip() -> None:
    status = CanaryStatus(observed_generation=3).with_phase(Phase.FAILED, NOW)
    assert CanaryStatus.from_dict(status.to_dict()) == status


def test_a_status_stored_before_kstatus_conditions_gets_them_from_its_phase() -> None:
    old = {
        "phase": "Succeeded",
        "observedGeneration": 2,
        "conditions": [
            {
                "type": "Promoted",
                "status": "True",
                "reason": "Succeeded",
                "message": "Canary analysis completed successfully, promotion finished.",
                "lastTransitionTime": "2026-12-01T00:00:00Z",
                "lastUpdateTime": "2026-12-01T00:00:00Z",
            }
        ],
    }
    ready = CanaryStatus.from_dict(old).to_dict()["conditions"][1]
    assert ready == {
        "type": "Ready",
        "status": "True",
        "reason": "Succeeded",
        "message": "Canary analysis completed successfully, promotion finished.",
        "lastTransitionTime": "2026-12-01T00:00:00Z",
        "lastUpdateTime": "2026-12-01T00:00:00Z",
        "observedGeneration": 2,
    }

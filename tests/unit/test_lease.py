"""A step's claim, renewed while its hooks run: it never runs out under them, and a tick that
wrote the Canary meanwhile makes the step do nothing more."""

from __future__ import annotations

import datetime
import threading
from typing import Any

import pytest

from serin import reconcile
from serin.kube.store import Conflict, KubeUnavailable
from serin.model import parse_canary
from serin.reconcile import CLAIM_SECONDS, Lease, Lost
from serin.status import CanaryStatus

from .test_reconcile import NOW, canary

CANARY = parse_canary(canary("shop", "web", phase="Progressing"))
CLAIMED = CanaryStatus.from_dict(canary("shop", "web", phase="Progressing")["status"]).replace(
    claimed_until=NOW + datetime.timedelta(seconds=CLAIM_SECONDS)
)


class Versions:
    """Canary statuses written with optimistic concurrency; ``answers`` says what each write meets."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.written: list[tuple[str, str]] = []
        self.wrote = threading.Event()

    def write_canary_status(self, namespace: str, name: str, version: str, status: dict[str, Any]) -> str:
        answer = self.answers.pop(0) if self.answers else "ok"
        self.written.append((version, status["serin"]["claimedUntil"]))
        if not self.answers:
            self.wrote.set()
        if answer == "conflict":
            raise Conflict("the object has been modified")
        if answer == "down":
            raise KubeUnavailable("connection refused")
        return str(int(version) + 1)


@pytest.fixture(autouse=True)
def quick_renewals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconcile, "CLAIM_RENEW_SECONDS", 0.05)


def lease_on(store: Versions) -> Lease:
    times = iter(NOW + datetime.timedelta(seconds=seconds) for seconds in range(1, 100))
    return Lease(store, CANARY, "7", CLAIMED, lambda: next(times))  # type: ignore[arg-type]


def test_the_claim_is_renewed_with_each_version_it_wrote_until_the_step_ends() -> None:
    store = Versions("ok", "down", "ok")
    lease = lease_on(store)
    assert store.wrote.wait(5)
    version = lease.end()
    # The write the API server did not answer is tried again at the next renewal, same version.
    assert store.written[:3] == [
        ("7", "2026-01-01T12:05:01Z"),
        ("8", "2026-01-01T12:05:02Z"),
        ("8", "2026-01-01T12:05:03Z"),
    ]
    # Each write but the one that failed made a new version; the step goes on from the last.
    assert version == str(7 + len(store.written) - 1)
    written = len(store.written)
    threading.Event().wait(0.2)
    assert len(store.written) == written, "no renewal after the step ended"


def test_a_step_whose_canary_another_tick_wrote_is_lost() -> None:
    store = Versions("conflict")
    lease = lease_on(store)
    assert store.wrote.wait(5)
    with pytest.raises(Lost):
        lease.end()

"""``serin wait``: a Canary whose status changes from one read to the next, on a clock that takes no time."""

from __future__ import annotations

import datetime
import io
from collections.abc import Sequence
from typing import Any

import pytest

from serin.cli import run
from serin.kube.store import KubeRejected, KubeUnavailable
from serin.status import CanaryStatus, MetricCheck, Phase
from serin.waiting import Clock
from tests.unit.fake_store import FakeStore

START = datetime.datetime(2026, 12, 7, 10, 0, 0, tzinfo=datetime.UTC)
PASSED = (
    MetricCheck("request-success-rate", 99.5, True, "request-success-rate 99.5 >= 99: passed"),
    MetricCheck("request-duration", 120.0, True, "request-duration 120 <= 500: passed"),
)
LOW_SUCCESS = (
    MetricCheck("request-success-rate", 87.5, False, "Halt podinfo.shop advancement success rate 87.50% < 99%"),
    MetricCheck("request-duration", 120.0, True, "request-duration 120 <= 500: passed"),
)


class FakeClock(Clock):
    """Time passes only in ``sleep``, which keeps what it was asked for."""

    def __init__(self) -> None:
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.elapsed

    def now(self) -> datetime.datetime:
        return START + datetime.timedelta(seconds=self.elapsed)

    def sleep(self, seconds: float) -> None:
        # A wait whose deadline is never reached fails here instead of hanging the suite.
        assert len(self.sleeps) < 10_000, "the wait does not end"
        self.sleeps.append(seconds)
        self.elapsed += seconds


# One read of the Canary: the object, None (there is none), or the error the API server gave.
Read = dict[str, Any] | None | Exception


class ChangingStore(FakeStore):
    """Each read of the Canary gives the next of ``reads``; the last one again once they run out."""

    def __init__(self, reads: Sequence[Read]) -> None:
        super().__init__()
        self.reads = list(reads)

    def get(self, kind: str, namespace: str, name: str, api_version: str | None = None) -> dict[str, Any] | None:
        self.calls.append(f"get {kind} {namespace}/{name}")
        read = self.reads.pop(0) if len(self.reads) > 1 else self.reads[0]
        if isinstance(read, Exception):
            raise read
        return read


def canary(
    phase: Phase,
    weight: int = 0,
    failed: int = 0,
    checks: tuple[MetricCheck, ...] = (),
    generation: int = 1,
    observed: int = 1,
    applied: str = "7f9c2d1e",
    promoted: str = "5a0b3c4d",
) -> dict[str, Any]:
    """A Canary as Serin stores it, its status in ``phase``."""
    status = (
        CanaryStatus()
        .with_phase(phase, START)
        .replace(
            canary_weight=weight,
            failed_checks=failed,
            checks=checks,
            observed_generation=observed,
            last_applied_spec=applied,
            last_promoted_spec=promoted,
        )
    )
    return {
        "apiVersion": "serin.dev/v1beta1",
        "kind": "Canary",
        "metadata": {"namespace": "shop", "name": "podinfo", "generation": generation},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"}},
        "status": status.to_dict(),
    }


def wait(
    reads: Sequence[Read], *args: str, canary_name: str = "shop/podinfo"
) -> tuple[int, list[str], FakeClock, ChangingStore]:
    """The exit status and stdout's lines of ``serin wait``, with the clock and store it used."""
    clock, store, out = FakeClock(), ChangingStore(reads), io.StringIO()
    code = run(["wait", canary_name, *args], out, store=store, clock=clock)
    return code, out.getvalue().splitlines(), clock, store


def test_a_release_that_succeeds_exits_0_with_a_line_per_step(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, clock, _ = wait(
        [
            canary(Phase.INITIALIZING),
            canary(Phase.PROGRESSING, weight=10, checks=PASSED),
            canary(Phase.PROGRESSING, weight=10, checks=PASSED),
            canary(Phase.PROGRESSING, weight=20, checks=PASSED),
            canary(Phase.PROMOTING, weight=20, checks=PASSED),
            canary(Phase.FINALISING, checks=PASSED),
            canary(Phase.SUCCEEDED, checks=PASSED, promoted="7f9c2d1e"),
        ]
    )
    passed = "request-success-rate 99.5 passed, request-duration 120 passed"
    assert (code, lines) == (
        0,
        [
            "2026-12-07T10:00:00Z shop/podinfo Initializing weight 0 iteration 0 failed checks 0",
            f"2026-12-07T10:00:02Z shop/podinfo Progressing weight 10 iteration 0 failed checks 0: {passed}",
            f"2026-12-07T10:00:06Z shop/podinfo Progressing weight 20 iteration 0 failed checks 0: {passed}",
            f"2026-12-07T10:00:08Z shop/podinfo Promoting weight 20 iteration 0 failed checks 0: {passed}",
            f"2026-12-07T10:00:10Z shop/podinfo Finalising weight 0 iteration 0 failed checks 0: {passed}",
            f"2026-12-07T10:00:12Z shop/podinfo Succeeded weight 0 iteration 0 failed checks 0: {passed}",
            "2026-12-07T10:00:12Z shop/podinfo succeeded, revision 7f9c2d1e promoted: "
            "Canary analysis completed successfully, promotion finished.",
        ],
    )
    assert clock.sleeps == [2.0] * 6
    assert capsys.readouterr().err == ""


def test_the_first_revision_in_place_is_done_too() -> None:
    code, lines, _, _ = wait([canary(Phase.INITIALIZED, applied="5a0b3c4d")])
    assert (code, lines[-1]) == (
        0,
        "2026-12-07T10:00:00Z shop/podinfo initialized, revision 5a0b3c4d in place: "
        "Deployment initialization completed.",
    )


def test_a_rollback_exits_1_saying_why() -> None:
    code, lines, _, _ = wait(
        [
            canary(Phase.PROGRESSING, weight=10, checks=PASSED),
            canary(Phase.PROGRESSING, weight=10, failed=1, checks=LOW_SUCCESS),
            canary(Phase.FAILED, checks=LOW_SUCCESS),
        ]
    )
    low = "request-success-rate 87.5 failed, request-duration 120 passed"
    assert (code, lines) == (
        1,
        [
            "2026-12-07T10:00:00Z shop/podinfo Progressing weight 10 iteration 0 failed checks 0: "
            "request-success-rate 99.5 passed, request-duration 120 passed",
            f"2026-12-07T10:00:02Z shop/podinfo Progressing weight 10 iteration 0 failed checks 1: {low}",
            f"2026-12-07T10:00:04Z shop/podinfo Failed weight 0 iteration 0 failed checks 0: {low}",
            "2026-12-07T10:00:04Z shop/podinfo failed, revision 7f9c2d1e rolled back: "
            "Canary analysis failed, Deployment scaled to zero. Last failed check: "
            "request-success-rate: Halt podinfo.shop advancement success rate 87.50% < 99%",
        ],
    )


def test_a_rollback_without_a_failed_check_gives_the_condition_alone() -> None:
    code, lines, _, _ = wait([canary(Phase.FAILED, checks=PASSED)])
    assert (code, lines[-1]) == (
        1,
        "2026-12-07T10:00:00Z shop/podinfo failed, revision 7f9c2d1e rolled back: "
        "Canary analysis failed, Deployment scaled to zero.",
    )


def test_a_release_that_never_ends_exits_2_at_the_timeout_saying_where_it_is() -> None:
    code, lines, clock, store = wait([canary(Phase.PROGRESSING, weight=20)], "--timeout", "9s", "--interval", "2s")
    assert (code, lines) == (
        2,
        [
            "2026-12-07T10:00:00Z shop/podinfo Progressing weight 20 iteration 0 failed checks 0",
            "2026-12-07T10:00:09Z shop/podinfo timed out after 9s: Progressing weight 20 iteration 0 failed checks 0",
        ],
    )
    # The last read is at the deadline itself.
    assert clock.sleeps == [2.0, 2.0, 2.0, 2.0, 1.0]
    assert len(store.calls) == 6


def test_the_timeout_and_interval_are_go_durations() -> None:
    code, lines, clock, _ = wait([canary(Phase.WAITING_PROMOTION)], "--timeout", "1h30m", "--interval", "1m30s")
    assert (code, lines[-1]) == (
        2,
        "2026-12-07T11:30:00Z shop/podinfo timed out after 1h30m: "
        "WaitingPromotion weight 0 iteration 0 failed checks 0",
    )
    assert clock.sleeps == [90.0] * 60


def test_by_default_it_waits_10m_reading_every_2s() -> None:
    code, _, clock, _ = wait([canary(Phase.PROGRESSING)])
    assert (code, clock.elapsed, set(clock.sleeps)) == (2, 600.0, {2.0})


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        pytest.param("--timeout", "10x", "argument --timeout: '10x' is not a duration such as 90s, 10m or 1h30m"),
        pytest.param("--timeout", "", "argument --timeout: '' is not a duration such as 90s, 10m or 1h30m"),
        pytest.param("--interval", "0s", "argument --interval: '0s' is not longer than zero"),
    ],
)
def test_a_bad_duration_is_a_usage_error_not_a_timeout(
    option: str, value: str, error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        wait([canary(Phase.SUCCEEDED)], option, value)
    assert exited.value.code == 64
    assert capsys.readouterr().err.splitlines()[-1] == f"serin wait: error: {error}"


def test_a_canary_not_there_yet_is_waited_for() -> None:
    code, lines, _, _ = wait([None, None, canary(Phase.INITIALIZING), canary(Phase.INITIALIZED)])
    assert (code, lines) == (
        0,
        [
            "2026-12-07T10:00:00Z shop/podinfo not found",
            "2026-12-07T10:00:04Z shop/podinfo Initializing weight 0 iteration 0 failed checks 0",
            "2026-12-07T10:00:06Z shop/podinfo Initialized weight 0 iteration 0 failed checks 0",
            "2026-12-07T10:00:06Z shop/podinfo initialized, revision 5a0b3c4d in place: "
            "Deployment initialization completed.",
        ],
    )


def test_a_canary_that_never_comes_times_out_saying_so() -> None:
    code, lines, _, _ = wait([None], "--timeout", "4s")
    assert (code, lines) == (
        2,
        [
            "2026-12-07T10:00:00Z shop/podinfo not found",
            "2026-12-07T10:00:04Z shop/podinfo timed out after 4s: not found",
        ],
    )


def test_a_canary_with_no_status_yet_is_waited_for() -> None:
    fresh = canary(Phase.INITIALIZING)
    del fresh["status"]
    code, lines, _, _ = wait([fresh, canary(Phase.INITIALIZED)])
    assert (code, lines[0]) == (0, "2026-12-07T10:00:00Z shop/podinfo no status yet")


def test_a_verdict_about_an_older_spec_is_not_taken() -> None:
    # The Canary's spec was changed (generation 2): Serin has not acted on it yet.
    code, lines, _, _ = wait(
        [
            canary(Phase.SUCCEEDED, generation=2, observed=1),
            canary(Phase.SUCCEEDED, generation=2, observed=1),
            canary(Phase.PROGRESSING, generation=2, observed=2),
            canary(Phase.SUCCEEDED, generation=2, observed=2, promoted="7f9c2d1e"),
        ]
    )
    assert (code, lines) == (
        0,
        [
            "2026-12-07T10:00:00Z shop/podinfo Succeeded (generation 2 not observed yet) "
            "weight 0 iteration 0 failed checks 0",
            "2026-12-07T10:00:04Z shop/podinfo Progressing weight 0 iteration 0 failed checks 0",
            "2026-12-07T10:00:06Z shop/podinfo Succeeded weight 0 iteration 0 failed checks 0",
            "2026-12-07T10:00:06Z shop/podinfo succeeded, revision 7f9c2d1e promoted: "
            "Canary analysis completed successfully, promotion finished.",
        ],
    )


def test_a_failure_about_an_older_spec_is_not_taken() -> None:
    code, lines, _, _ = wait(
        [canary(Phase.FAILED, generation=3, observed=2), canary(Phase.SUCCEEDED, generation=3, observed=3)]
    )
    assert (code, lines[0]) == (
        0,
        "2026-12-07T10:00:00Z shop/podinfo Failed (generation 3 not observed yet) weight 0 iteration 0 failed checks 0",
    )


def test_a_suspended_canary_says_so() -> None:
    suspended = canary(Phase.PROGRESSING, weight=30)
    suspended["spec"]["suspend"] = True
    code, lines, _, _ = wait([suspended], "--timeout", "2s")
    assert (code, lines[0]) == (
        2,
        "2026-12-07T10:00:00Z shop/podinfo Progressing (suspended) weight 30 iteration 0 failed checks 0",
    )


def test_a_refusal_of_the_api_server_ends_the_wait_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    forbidden = KubeRejected(
        'get Canary shop/podinfo: 403 canaries.serin.dev "podinfo" is forbidden: User "ci" cannot get resource '
        '"canaries" in API group "serin.dev" in the namespace "shop"'
    )
    code, lines, clock, store = wait([forbidden, canary(Phase.SUCCEEDED)])
    assert (code, lines, clock.sleeps, len(store.calls)) == (1, [], [], 1)
    assert capsys.readouterr().err == (
        "serin: cannot wait for shop/podinfo: the API server refused: get Canary shop/podinfo: 403 "
        'canaries.serin.dev "podinfo" is forbidden: User "ci" cannot get resource "canaries" in API group '
        '"serin.dev" in the namespace "shop"\n'
    )


def test_an_api_server_that_cannot_be_reached_is_asked_again(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _, _ = wait(
        [
            canary(Phase.PROGRESSING, weight=10),
            KubeUnavailable("get Canary shop/podinfo: connection refused"),
            KubeUnavailable("get Canary shop/podinfo: 503 the server is shutting down"),
            canary(Phase.PROGRESSING, weight=10),
            canary(Phase.SUCCEEDED),
        ]
    )
    assert (code, lines) == (
        0,
        [
            "2026-12-07T10:00:00Z shop/podinfo Progressing weight 10 iteration 0 failed checks 0",
            # Said again after the outage: the last line before it is not the latest news.
            "2026-12-07T10:00:06Z shop/podinfo Progressing weight 10 iteration 0 failed checks 0",
            "2026-12-07T10:00:08Z shop/podinfo Succeeded weight 0 iteration 0 failed checks 0",
            "2026-12-07T10:00:08Z shop/podinfo succeeded, revision 5a0b3c4d promoted: "
            "Canary analysis completed successfully, promotion finished.",
        ],
    )
    # One line per outage, however many reads fail.
    assert capsys.readouterr().err == (
        "serin: 2026-12-07T10:00:02Z cannot read canary shop/podinfo, retrying until the timeout: "
        "get Canary shop/podinfo: connection refused\n"
    )


def test_an_outage_that_outlasts_the_timeout_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _, _ = wait([KubeUnavailable("get Canary shop/podinfo: 503 unavailable")], "--timeout", "4s")
    assert (code, lines) == (
        2,
        [
            "2026-12-07T10:00:04Z shop/podinfo timed out after 4s: "
            "cannot be read: get Canary shop/podinfo: 503 unavailable"
        ],
    )
    assert len(capsys.readouterr().err.splitlines()) == 1


@pytest.mark.parametrize("argv", [["wait", "-n", "shop", "podinfo"], ["wait", "podinfo", "--namespace", "shop"]])
def test_the_canary_may_be_named_in_a_namespace(argv: list[str]) -> None:
    store, out = ChangingStore([canary(Phase.SUCCEEDED)]), io.StringIO()
    assert run(argv, out, store=store, clock=FakeClock()) == 0
    assert store.calls == ["get Canary shop/podinfo"]


def test_a_malformed_name_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _, store = wait([canary(Phase.SUCCEEDED)], canary_name="a/b/c")
    assert (code, lines, store.calls) == (1, [], [])
    assert capsys.readouterr().err == "serin: name a Canary as NAME or NAMESPACE/NAME, not 'a/b/c'\n"


@pytest.mark.parametrize("argv", [["--help"], ["wait", "--help"]])
def test_the_help_gives_the_exit_statuses(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        run(argv, io.StringIO())
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert "exit status:\n  0   " in shown
    assert "\n  2   " in shown and "timed out" in shown
    assert "\n  64  the command line is wrong (a usage error)" in shown


def test_the_wait_help_says_to_run_it_after_kubectl_apply(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run(["wait", "--help"], io.StringIO())
    assert "run `serin wait` after `kubectl apply` returns" in " ".join(capsys.readouterr().out.split())


def test_a_wrong_command_line_elsewhere_is_a_usage_error_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        run(["status", "--no-such-option"], io.StringIO())
    assert exited.value.code == 64
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_a_new_revision_marked_by_the_webhook_is_waited_for() -> None:
    """Behind a confirm-rollout gate the phase still says Succeeded, but Reconciling says a release
    is coming: the previous release's success is not taken for this one's."""
    marked = canary(Phase.SUCCEEDED, promoted="7f9c2d1e")
    marked["status"] = (
        CanaryStatus.from_dict(marked["status"])
        .reconciling("NewRevision", "New revision detected, waiting for its gates.", START)
        .to_dict()
    )
    code, lines, _, _ = wait([marked, marked, canary(Phase.PROGRESSING, weight=10), canary(Phase.SUCCEEDED)])
    assert (code, lines) == (
        0,
        [
            "2026-12-07T10:00:00Z shop/podinfo Succeeded (new revision, not started yet) weight 0 iteration 0 "
            "failed checks 0",
            "2026-12-07T10:00:04Z shop/podinfo Progressing weight 10 iteration 0 failed checks 0",
            "2026-12-07T10:00:06Z shop/podinfo Succeeded weight 0 iteration 0 failed checks 0",
            "2026-12-07T10:00:06Z shop/podinfo succeeded, revision 5a0b3c4d promoted: "
            "Canary analysis completed successfully, promotion finished.",
        ],
    )

"""SERIN_WATCH_NAMESPACES: which namespaces an install serves, and where it lists to find them."""

from __future__ import annotations

import pytest

from serin.config import Settings
from serin.scope import Scope


@pytest.mark.parametrize(
    ("text", "namespaces"),
    [
        pytest.param("", (), id="unset-is-the-whole-cluster"),
        pytest.param(" , ,", (), id="only-commas-is-the-whole-cluster"),
        pytest.param("team-a", ("team-a",), id="one"),
        pytest.param(" team-a , team-b,", ("team-a", "team-b"), id="spaces-and-a-trailing-comma"),
        pytest.param("team-b,team-a,team-b", ("team-b", "team-a"), id="repeated-once-in-order"),
    ],
)
def test_the_namespaces_an_install_serves(text: str, namespaces: tuple[str, ...]) -> None:
    assert Scope.parse(text) == Scope(namespaces)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        pytest.param(
            "Team-A",
            "must be namespace names (DNS-1123 labels) separated by commas, not 'Team-A'",
            id="upper-case",
        ),
        pytest.param(
            "team-a,../kube-system,team b",
            "must be namespace names (DNS-1123 labels) separated by commas, not '../kube-system', 'team b'",
            id="a-path-and-a-space",
        ),
        pytest.param(
            "team-a;team-b",
            "must be namespace names (DNS-1123 labels) separated by commas, not 'team-a;team-b'",
            id="semicolons",
        ),
    ],
)
def test_what_is_no_namespace_name_is_refused(text: str, error: str) -> None:
    with pytest.raises(ValueError) as refused:
        Scope.parse(text)
    assert str(refused.value) == error


def test_a_whole_cluster_install_lists_once_and_serves_everywhere() -> None:
    scope = Scope()
    assert (scope.whole_cluster, scope.serves("kube-public")) == (True, True)
    assert (scope.lists(None), scope.lists("team-a"), scope.refusal("team-a")) == ((None,), ("team-a",), None)


def test_a_namespaced_install_lists_each_namespace_it_serves_and_no_other() -> None:
    scope = Scope(("team-a", "team-b"))
    assert (scope.whole_cluster, scope.serves("team-a"), scope.serves("team-c")) == (False, True, False)
    assert (scope.lists(None), scope.lists("team-b"), scope.lists("team-c")) == (("team-a", "team-b"), ("team-b",), ())
    assert scope.refusal("team-b") is None
    assert scope.refusal("team-c") == (
        "namespace team-c is not served by this install of Serin, which serves team-a, team-b only "
        "(SERIN_WATCH_NAMESPACES)"
    )


def test_the_settings_read_the_namespaces_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERIN_ADMISSION_AUTHENTICATION", "none")
    monkeypatch.delenv("SERIN_WATCH_NAMESPACES", raising=False)
    assert Settings.from_env().scope == Scope()
    monkeypatch.setenv("SERIN_WATCH_NAMESPACES", "team-a,team-b")
    assert Settings.from_env().scope == Scope(("team-a", "team-b"))
    monkeypatch.setenv("SERIN_WATCH_NAMESPACES", "team-a,Team-B")
    with pytest.raises(ValueError) as refused:
        Settings.from_env()
    assert str(refused.value) == (
        "SERIN_WATCH_NAMESPACES must be namespace names (DNS-1123 labels) separated by commas, not 'Team-B'"
    )

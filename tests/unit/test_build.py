"""The wrapper modules the local control plane is built from."""

from __future__ import annotations

import pytest

from localcluster import build
from localcluster.build import BuildError, _go_env, kubernetes_wrapper_go_mod, staging_modules, staging_version

UPSTREAM = """module k8s.io/kubernetes

go 1.26.0

require (
\tgithub.com/spf13/cobra v1.10.0
\tk8s.io/api v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tk8s.io/kms => ./staging/src/k8s.io/kms
)
"""


def test_staging_modules_are_read_from_upstream() -> None:
    assert staging_modules(UPSTREAM) == ["k8s.io/api", "k8s.io/client-go", "k8s.io/kms"]


@pytest.mark.parametrize(("kubernetes", "staging"), [("v1.36.3", "v0.36.3"), ("v1.34.0", "v0.34.0")])
def test_staging_version(kubernetes: str, staging: str) -> None:
    assert staging_version(kubernetes) == staging


def test_wrapper_replaces_each_staging_module_with_its_published_version() -> None:
    wrapper = kubernetes_wrapper_go_mod("v1.36.3", UPSTREAM)
    assert "require k8s.io/kubernetes v1.36.3" in wrapper
    for module in ("k8s.io/api", "k8s.io/client-go", "k8s.io/kms"):
        assert f"\t{module} => {module} v0.36.3\n" in wrapper
    assert "./staging" not in wrapper


def test_wrapper_refuses_an_upstream_without_staging_modules() -> None:
    with pytest.raises(BuildError):
        kubernetes_wrapper_go_mod("v1.36.3", "module k8s.io/kubernetes\n")


def test_user_goflags_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOFLAGS", "-modcacherw")
    assert _go_env()["GOFLAGS"] == "-modcacherw -mod=mod"
    monkeypatch.delenv("GOFLAGS")
    assert _go_env()["GOFLAGS"] == "-mod=mod"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "v1.37.2"),
        ({"SERIN_KUBERNETES_VERSION": ""}, "v1.37.2"),
        ({"SERIN_KUBERNETES_VERSION": "v1.34.4"}, "v1.34.4"),
        ({"SERIN_KUBERNETES_VERSION": "v1.36.3"}, "v1.36.3"),
    ],
)
def test_the_kubernetes_version_is_chosen_by_the_environment(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], expected: str
) -> None:
    monkeypatch.delenv("SERIN_KUBERNETES_VERSION", raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    assert build.kubernetes_version() == expected


def test_an_unsupported_kubernetes_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERIN_KUBERNETES_VERSION", "v1.29.0")
    with pytest.raises(build.BuildError) as refused:
        build.kubernetes_version()
    supported = "v1.34.4, v1.36.3, v1.37.2"
    assert str(refused.value) == f"SERIN_KUBERNETES_VERSION=v1.29.0 is not one of the supported {supported}"

"""Build (or find in the cache) every binary the local control plane runs.

Nothing is downloaded from release pages: Kubernetes, etcd and kwok are compiled from the Go
module proxy, Prometheus is unpacked from Debian's package. Each component lands in its own
versioned folder under the cache (``$SERIN_CACHE``, default ``~/.cache/serin``) and is only
rebuilt when that folder is missing, so the first run takes many minutes and later runs none.
A build writes to a temporary folder and renames it at the end: an interrupted build is never
mistaken for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from localcluster.paths import cache_dir

# The Kubernetes versions the local control plane is built at: the default (the newest Serin
# supports), the oldest, and the release between them; CI runs the integration suite on the
# newest and the oldest. SERIN_KUBERNETES_VERSION picks one (each is built once into its own
# folder of the cache).
KUBERNETES_VERSION = "v1.37.2"
SUPPORTED_KUBERNETES_VERSIONS = ("v1.34.4", "v1.36.3", "v1.37.2")
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"
# Not part of the control plane: benchmarks run it beside Serin to compare the two.
FLAGGER_VERSION = "v1.36.1"
# Renders, lints and installs Serin's chart (charts/serin) in the tests, and renders k8s/ from it.
HELM_VERSION = "v3.21.4"
# The Kubernetes version Helm assumes when no cluster is asked (helm template, helm lint): the
# client-go minor its go.mod requires, as Helm's own Makefile derives it at release builds.
HELM_KUBERNETES_MINOR = 36
# The routing APIs Serin writes to, installed with their real schemas from the projects' own
# modules, so that the API server refuses whatever a real mesh or gateway would refuse.
ISTIO_API_VERSION = "v1.32.0"
GATEWAY_API_VERSION = "v1.6.3"
CONTOUR_VERSION = "v1.33.8"
TRAEFIK_VERSION = "v3.7.13"
# And KEDA's ScaledObject, which Serin copies for the primary of an autoscaled target.
KEDA_VERSION = "v2.21.0"
# And cert-manager's, for the chart's certManager variant: its Certificates and Issuers are
# schema-checked by the API server like any other object of the install.
CERT_MANAGER_VERSION = "v1.21.2"
# Each project's CRD manifests: (short name, module, version, paths or globs inside the module).
THIRD_PARTY_CRD_SOURCES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("istio", "istio.io/api", ISTIO_API_VERSION, ("kubernetes/customresourcedefinitions.gen.yaml",)),
    (
        "gateway-api",
        "sigs.k8s.io/gateway-api",
        GATEWAY_API_VERSION,
        ("config/crd/standard/gateway.networking.k8s.io_*.yaml",),
    ),
    ("contour", "github.com/projectcontour/contour", CONTOUR_VERSION, ("examples/contour/01-crds.yaml",)),
    (
        "traefik",
        "github.com/traefik/traefik/v3",
        TRAEFIK_VERSION,
        # Every kind of traefik.io: its provider lists them all before it routes anything.
        ("docs/content/reference/dynamic-configuration/traefik.io_*.yaml",),
    ),
    ("keda", "github.com/kedacore/keda/v2", KEDA_VERSION, ("config/crd/bases/keda.sh_scaledobjects.yaml",)),
    (
        "cert-manager",
        "github.com/cert-manager/cert-manager",
        CERT_MANAGER_VERSION,
        ("deploy/crds/cert-manager.io_*.yaml",),
    ),
)

KUBERNETES_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


class BuildError(RuntimeError):
    """A component could not be built; the message says which and why."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the executables the local control plane runs."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    kwok: Path
    prometheus: Path
    crds: Path
    helm: Path
    traefik: Path


def staging_version(kubernetes_version: str) -> str:
    """k8s.io/kubernetes vX.Y.Z publishes its staging modules (k8s.io/api, ...) as v0.Y.Z."""
    match = re.fullmatch(r"v1\.(\d+)\.(\d+)", kubernetes_version)
    if not match:
        raise BuildError(f"unexpected Kubernetes version {kubernetes_version!r}")
    return f"v0.{match.group(1)}.{match.group(2)}"


def staging_modules(upstream_go_mod: str) -> list[str]:
    """The modules k8s.io/kubernetes replaces with its own ./staging folders.

    Replace directives only apply in the main module, so a wrapper module must replace each of
    them with the published version; reading the list from upstream keeps it right for any
    release instead of a hand-typed copy.
    """
    return sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", upstream_go_mod, re.M)))


def kubernetes_wrapper_go_mod(kubernetes_version: str, upstream_go_mod: str) -> str:
    published = staging_version(kubernetes_version)
    replaces = "".join(f"\t{module} => {module} {published}\n" for module in staging_modules(upstream_go_mod))
    if not replaces:
        raise BuildError("found no staging modules in k8s.io/kubernetes's go.mod")
    return (
        "module serin.dev/localcluster/kubernetes\n\n"
        "go 1.26.0\n\n"
        f"require k8s.io/kubernetes {kubernetes_version}\n\n"
        f"replace (\n{replaces})\n"
    )


def etcd_wrapper_go_mod(etcd_version: str) -> str:
    # etcd's own go.mod replaces its sibling modules with relative paths; a wrapper that merely
    # requires the server module gets the published siblings instead.
    return f"module serin.dev/localcluster/etcd\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 {etcd_version}\n"


def _log(message: str) -> None:
    print(f"[localcluster build] {message}", file=sys.stderr, flush=True)


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CGO_ENABLED", "0")
    # The wrapper modules record their requirements as they build; keep whatever else is set.
    env["GOFLAGS"] = " ".join(flag for flag in (env.get("GOFLAGS", ""), "-mod=mod") if flag)
    return env


def _run(command: list[str], cwd: Path, what: str) -> None:
    """Run a build command, echoing a heartbeat so a long compile is visibly alive."""
    started = time.monotonic()
    log_path = cwd / "build.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=cwd, env=_go_env(), stdout=log, stderr=subprocess.STDOUT)
        while True:
            try:
                code = process.wait(timeout=30)
                break
            except subprocess.TimeoutExpired:
                _log(f"{what}: still compiling ({time.monotonic() - started:.0f}s)")
    if code != 0:
        tail = log_path.read_text()[-4000:]
        raise BuildError(f"{what} failed (exit {code}); last output:\n{tail}")
    _log(f"{what}: done in {time.monotonic() - started:.0f}s")


def _download(module: str, version: str, cwd: Path) -> dict[str, str]:
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        cwd=cwd,
        env=_go_env(),
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise BuildError(f"go mod download {module}@{version} failed: {out.stdout}{out.stderr}")
    info: dict[str, str] = json.loads(out.stdout)
    return info


def _go_mod_path(module: str, version: str, cwd: Path) -> Path:
    return Path(_download(module, version, cwd)["GoMod"])


def _module_dir(module: str, version: str, cwd: Path) -> Path:
    return Path(_download(module, version, cwd)["Dir"])


# The stages kwokctl gives a cluster by default: nodes become Ready and keep a lease, pods
# become Running and Ready at once, and finish or go away when deleted.
KWOK_STAGE_FILES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)


def kwok_default_stages(kwok_module_dir: Path) -> str:
    """kwok only moves objects through the stages it is configured with; take its own."""
    return "\n---\n".join((kwok_module_dir / name).read_text().strip() for name in KWOK_STAGE_FILES) + "\n"


def _fresh_tmp(final: Path) -> Path:
    """The empty folder a build of ``final`` writes to (what an interrupted one left is removed)."""
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _finish(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def kubernetes_version() -> str:
    """The Kubernetes version to build and run: ``SERIN_KUBERNETES_VERSION``, else the default."""
    version = os.environ.get("SERIN_KUBERNETES_VERSION") or KUBERNETES_VERSION
    if version not in SUPPORTED_KUBERNETES_VERSIONS:
        raise BuildError(
            f"SERIN_KUBERNETES_VERSION={version} is not one of the supported {', '.join(SUPPORTED_KUBERNETES_VERSIONS)}"
        )
    return version


def build_kubernetes(cache: Path, version: str | None = None) -> Path:
    version = version or kubernetes_version()
    out_dir = cache / "bin" / f"kubernetes-{version}"
    if all((out_dir / name).is_file() for name in KUBERNETES_COMMANDS):
        return out_dir
    src = cache / "src" / f"kubernetes-{version}"
    src.mkdir(parents=True, exist_ok=True)
    _log(f"building Kubernetes {version} ({', '.join(KUBERNETES_COMMANDS)}); the first build takes a long while")
    if not (src / "go.mod").exists():
        upstream = _go_mod_path("k8s.io/kubernetes", version, src).read_text()
        (src / "go.mod").write_text(kubernetes_wrapper_go_mod(version, upstream))
    minor = version.split(".")[1]
    ldflags = " ".join(
        [
            "-s -w",
            f"-X k8s.io/component-base/version.gitVersion={version}",
            "-X k8s.io/component-base/version.gitMajor=1",
            f"-X k8s.io/component-base/version.gitMinor={minor}",
            "-X k8s.io/component-base/version.gitTreeState=clean",
        ]
    )
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    packages = [f"k8s.io/kubernetes/cmd/{name}" for name in KUBERNETES_COMMANDS]
    _run(["go", "build", "-trimpath", "-ldflags", ldflags, "-o", f"{tmp}/", *packages], src, f"Kubernetes {version}")
    _finish(tmp, out_dir)
    return out_dir


def build_etcd(cache: Path, version: str = ETCD_VERSION) -> Path:
    binary = cache / "bin" / f"etcd-{version}" / "etcd"
    if binary.is_file():
        return binary
    src = cache / "src" / f"etcd-{version}"
    src.mkdir(parents=True, exist_ok=True)
    if not (src / "go.mod").exists():
        (src / "go.mod").write_text(etcd_wrapper_go_mod(version))
    _log(f"building etcd {version}")
    tmp = binary.parent.with_name(f".{binary.parent.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _run(
        ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(tmp / "etcd"), "go.etcd.io/etcd/server/v3"],
        src,
        f"etcd {version}",
    )
    _finish(tmp, binary.parent)
    return binary


def _go_install(cache: Path, name: str, package: str, version: str, ldflags: str = "") -> tuple[Path, Path]:
    """``go install package@version`` into a temporary folder; (that folder, the final one).

    For modules whose go.mod has no replace directives, which ``go install pkg@version`` builds
    as they are. The caller adds what else the folder needs, then ``_finish``es it.
    """
    final = cache / "bin" / f"{name}-{version}"
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _log(f"building {name} {version}")
    command = ["env", f"GOBIN={tmp}", "go", "install", "-trimpath", "-ldflags", f"-s -w {ldflags}".strip()]
    command.append(f"{package}@{version}")
    _run(command, tmp, f"{name} {version}")
    (tmp / "build.log").unlink(missing_ok=True)
    return tmp, final


def build_kwok(cache: Path, version: str = KWOK_VERSION) -> Path:
    binary = cache / "bin" / f"kwok-{version}" / "kwok"
    if binary.is_file():
        return binary
    tmp, final = _go_install(cache, "kwok", "sigs.k8s.io/kwok/cmd/kwok", version)
    (tmp / "stages.yaml").write_text(kwok_default_stages(_module_dir("sigs.k8s.io/kwok", version, tmp)))
    _finish(tmp, final)
    return binary


def build_helm(cache: Path, version: str = HELM_VERSION) -> Path:
    binary = cache / "bin" / f"helm-{version}" / "helm"
    if binary.is_file():
        return binary
    # What Helm's release build sets: its version, and the Kubernetes version it assumes when it
    # renders without a cluster (else v1.20, which fails the chart's kubeVersion).
    ldflags = " ".join(
        f"-X helm.sh/helm/v3/{variable}"
        for variable in (
            f"internal/version.version={version}",
            "pkg/lint/rules.k8sVersionMajor=1",
            f"pkg/lint/rules.k8sVersionMinor={HELM_KUBERNETES_MINOR}",
            "pkg/chartutil.k8sVersionMajor=1",
            f"pkg/chartutil.k8sVersionMinor={HELM_KUBERNETES_MINOR}",
        )
    )
    tmp, final = _go_install(cache, "helm", "helm.sh/helm/v3/cmd/helm", version, ldflags)
    _finish(tmp, final)
    return binary


def build_flagger(cache: Path | None = None, version: str = FLAGGER_VERSION) -> Path:
    """Flagger and its CRDs (``crd.yaml`` beside the binary), for side-by-side comparisons and the
    migration test.

    Built from a copy of its module with one line changed: its HTTP server (metrics, health)
    listens on 127.0.0.1 instead of every interface, since it runs out of cluster on a shared
    machine. (``go build -overlay`` may not replace files of the module cache, hence the copy.)
    """
    cache = cache or cache_dir()
    binary = cache / "bin" / f"flagger-{version}-loopback" / "flagger"
    if binary.is_file():
        return binary
    src = cache / "src" / f"flagger-{version}"
    if not (src / "go.mod").exists():
        module = _module_dir("github.com/fluxcd/flagger", version, cache)
        shutil.rmtree(src, ignore_errors=True)
        shutil.copytree(module, src)
        for path in [src, *src.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)  # the module cache's files are read-only
    server = src / "pkg" / "server" / "server.go"
    every_interface = 'Addr:         ":" + port,'
    source = server.read_text()
    if every_interface in source:
        server.write_text(source.replace(every_interface, 'Addr:         "127.0.0.1:" + port,'))
    elif "127.0.0.1" not in source:
        raise BuildError(f"Flagger {version}'s {server.name} no longer says {every_interface!r}: update the patch")
    final = binary.parent
    tmp = _fresh_tmp(final)
    _log(f"building flagger {version}")
    _run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(tmp / "flagger"), "./cmd/flagger"], src, "flagger")
    shutil.copyfile(src / "artifacts" / "flagger" / "crd.yaml", tmp / "crd.yaml")
    _finish(tmp, final)
    return binary


# What Traefik's module needs that the Go module proxy does not serve, and what the build uses
# instead. Its go.mod replaces go-http-auth with a fork at a commit the proxy refuses; the fork's
# earlier commit has the same API. Its dynamic configuration imports a nested module of empty
# extension points that is published nowhere. ACME's DNS providers of lego import cloud SDKs
# the proxy refuses, so the build's copy of lego leaves those providers out (certificates are
# never requested here).
TRAEFIK_AUTH_FORK = "github.com/containous/go-http-auth v0.4.1-0.20200324110947-a37a7636d23e"
LEGO_MODULE = "github.com/go-acme/lego/v5"
LEGO_PROVIDERS_WITHOUT_SDK = ("edgedns", "huaweicloud", "oraclecloud", "sakuracloud", "ucloud", "yandexcloud")
_TRAEFIK_EXTENSIONS = """// Package ext holds the extension points of Traefik's dynamic configuration: none here.
package ext

// HTTP extends dynamic.HTTP.
type HTTP struct{}

// Router extends dynamic.Router.
type Router struct{}
"""


def _required_version(go_mod: str, module: str) -> str:
    match = re.search(rf"^\s*{re.escape(module)}\s+(v\S+)", go_mod, re.M)
    if not match:
        raise BuildError(f"{module} is no longer required by Traefik's go.mod: update build_traefik")
    return match.group(1)


def _replacement(go_mod: str, module: str) -> str:
    match = re.search(rf"^\s*{re.escape(module)}\s+=>\s+(\S+ v\S+)", go_mod, re.M)
    if not match:
        raise BuildError(f"Traefik's go.mod no longer replaces {module}: update build_traefik")
    return match.group(1)


def without_dns_providers(registry: str, providers: tuple[str, ...]) -> str:
    """lego's generated DNS provider registry without ``providers`` (their import and their case)."""
    for provider in providers:
        registry, imports = re.subn(rf'\n\t"{re.escape(LEGO_MODULE)}/providers/dns/{provider}"', "", registry)
        registry, cases = re.subn(rf"\n\tcase [^\n]*:\n\t\treturn {provider}\.NewDNSProvider\(\)", "", registry)
        if (imports, cases) != (1, 1):
            raise BuildError(f"lego's DNS provider {provider} is not registered as expected: update build_traefik")
    return registry


def build_traefik(cache: Path | None = None, version: str = TRAEFIK_VERSION) -> Path:
    """Traefik, the real proxy of the local data plane, built from its module by a wrapper module
    (replace directives only apply in the main module) with the substitutes named above."""
    cache = cache or cache_dir()
    binary = cache / "bin" / f"traefik-{version}" / "traefik"
    if binary.is_file():
        return binary
    final = binary.parent
    tmp = _fresh_tmp(final)
    (tmp / "src").mkdir()
    _log(f"building traefik {version}")
    module = _module_dir("github.com/traefik/traefik/v3", version, tmp)
    upstream = (module / "go.mod").read_text()
    lego = tmp / "src" / "lego"
    shutil.copytree(_module_dir(LEGO_MODULE, _required_version(upstream, LEGO_MODULE), tmp), lego)
    for path in [lego, *lego.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)  # the module cache's files are read-only
    registry = lego / "providers" / "dns" / "zz_gen_dns_providers.go"
    registry.write_text(without_dns_providers(registry.read_text(), LEGO_PROVIDERS_WITHOUT_SDK))
    (tmp / "src" / "ext").mkdir()
    (tmp / "src" / "ext" / "go.mod").write_text("module github.com/traefik/traefik/dynamic/ext\n\ngo 1.24.0\n")
    (tmp / "src" / "ext" / "ext.go").write_text(_TRAEFIK_EXTENSIONS)
    go_line = re.search(r"^go (\S+)$", upstream, re.M)
    (tmp / "src" / "go.mod").write_text(
        "module serin.dev/localcluster/traefik\n\n"
        f"go {go_line.group(1) if go_line else '1.26.0'}\n\n"
        f"require github.com/traefik/traefik/v3 {version}\n\n"
        "replace (\n"
        f"\tgithub.com/abbot/go-http-auth => {TRAEFIK_AUTH_FORK}\n"
        f"\tgithub.com/gorilla/mux => {_replacement(upstream, 'github.com/gorilla/mux')}\n"
        "\tgithub.com/traefik/traefik/dynamic/ext => ./ext\n"
        f"\t{LEGO_MODULE} => ./lego\n"
        ")\n\n"
        # As Traefik's own go.mod: the SDK's monorepo makes this version an ambiguous import.
        "exclude github.com/tencentcloud/tencentcloud-sdk-go v3.0.83+incompatible\n"
    )
    (tmp / "src" / "tools.go").write_text(
        '//go:build tools\n\npackage tools\n\nimport _ "github.com/traefik/traefik/v3/cmd/traefik"\n'
    )
    _run(["go", "mod", "tidy"], tmp / "src", f"traefik {version} modules")
    ldflags = f"-s -w -X github.com/traefik/traefik/v3/pkg/version.Version={version}"
    command = ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(tmp / "traefik")]
    _run([*command, "github.com/traefik/traefik/v3/cmd/traefik"], tmp / "src", f"traefik {version}")
    shutil.rmtree(tmp / "src")
    _finish(tmp, final)
    return binary


# The load generator of benchmarks/admission_floor.py: its source lives in the repository, so the
# folder is named after a digest of it, and a changed source is built again.
LOADGEN_SOURCE = Path(__file__).resolve().parent.parent / "benchmarks" / "loadgen"


def build_loadgen(cache: Path | None = None) -> Path:
    """The admission benchmark's HTTPS load generator (standard library Go, nothing downloaded)."""
    cache = cache or cache_dir()
    digest = hashlib.sha256()
    for path in [*sorted(LOADGEN_SOURCE.glob("*.go")), LOADGEN_SOURCE / "go.mod"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    binary = cache / "bin" / f"loadgen-{digest.hexdigest()[:12]}" / "loadgen"
    if binary.is_file():
        return binary
    final = binary.parent
    tmp = _fresh_tmp(final)
    _log("building the load generator")
    # -C: the build runs in the source folder, while its log stays in the temporary one.
    command = ["go", "build", "-C", str(LOADGEN_SOURCE), "-trimpath", "-ldflags", "-s -w", "-o", str(tmp / "loadgen")]
    _run([*command, "."], tmp, "load generator")
    (tmp / "build.log").unlink(missing_ok=True)
    _finish(tmp, final)
    return binary


# kstatus as Flux computes it: kustomize-controller's `wait` and `healthChecks` read objects with
# Flux's fork of sigs.k8s.io/cli-utils, at this version (its go.mod's). localcluster/kstatus wraps
# it, so that tests read Serin's Canary status as Flux does; its go.mod requires the same version.
KSTATUS_SOURCE = Path(__file__).resolve().parent / "kstatus"
CLI_UTILS_MODULE = "github.com/fluxcd/cli-utils"
CLI_UTILS_VERSION = "v1.2.2"


def _kstatus_binary(cache: Path) -> Path:
    return cache / "bin" / f"kstatus-{CLI_UTILS_VERSION}" / "kstatus"


def cached_kstatus(cache: Path | None = None) -> Path | None:
    """The kstatus reader if it is already built, else None (builds nothing)."""
    binary = _kstatus_binary(cache or cache_dir())
    return binary if binary.is_file() else None


def build_kstatus(cache: Path | None = None) -> Path:
    """The kstatus reader (localcluster/kstatus): a JSON array of objects on stdin, one
    ``{"status", "message"}`` line per object on stdout."""
    cache = cache or cache_dir()
    binary = _kstatus_binary(cache)
    if binary.is_file():
        return binary
    required = re.search(rf"^\s*{re.escape(CLI_UTILS_MODULE)}\s+(v\S+)", (KSTATUS_SOURCE / "go.mod").read_text(), re.M)
    if not required or required.group(1) != CLI_UTILS_VERSION:
        # The folder is named after CLI_UTILS_VERSION: a build of another would be mistaken for it.
        raise BuildError(f"{KSTATUS_SOURCE / 'go.mod'} must require {CLI_UTILS_MODULE} {CLI_UTILS_VERSION}")
    final = binary.parent
    tmp = _fresh_tmp(final)
    _log(f"building kstatus ({CLI_UTILS_MODULE} {CLI_UTILS_VERSION})")
    # -mod=readonly: what is built is what the committed go.mod and go.sum say, and the build
    # writes nothing into the repository. -C: the log stays in the temporary folder.
    command = ["go", "build", "-C", str(KSTATUS_SOURCE), "-mod=readonly", "-trimpath", "-ldflags", "-s -w"]
    _run([*command, "-o", str(tmp / "kstatus"), "."], tmp, "kstatus")
    (tmp / "build.log").unlink(missing_ok=True)
    _finish(tmp, final)
    return binary


# Gateway API's experimental channel of HTTPRoute, kept beside the manifest (not installed at
# start: one channel at a time) so that a test can check Serin's routes fit it too.
GATEWAY_API_EXPERIMENTAL_HTTPROUTES = "config/crd/experimental/gateway.networking.k8s.io_httproutes.yaml"
EXPERIMENTAL_HTTPROUTES_FILE = "experimental-httproutes.yaml"
# CRDs written here, for APIs whose project's module is not on the Go module proxy.
LOCAL_CRDS = Path(__file__).resolve().parent / "crds"


def crds_dir(cache: Path) -> Path:
    """Named after the versions, and a digest of the whole list (and of the CRDs written here) so
    that a file added or changed is fetched again."""
    hashed = repr((THIRD_PARTY_CRD_SOURCES, GATEWAY_API_EXPERIMENTAL_HTTPROUTES))
    hashed += "".join(path.read_text() for path in sorted(LOCAL_CRDS.glob("*.yaml")))
    digest = hashlib.sha256(hashed.encode()).hexdigest()[:8]
    versions = "_".join(f"{name}-{version}" for name, _, version, _ in THIRD_PARTY_CRD_SOURCES)
    return cache / "crds" / f"{versions}_{digest}"


def _custom_resource_definitions(text: str) -> list[str]:
    """The CustomResourceDefinition documents of a YAML stream (the rest, policies and the like,
    belongs to each project's own installation, not to what Serin needs from it)."""
    documents = [document.strip() for document in re.split(r"^---[ \t]*$", text, flags=re.M)]
    return [document for document in documents if re.search(r"^kind: CustomResourceDefinition$", document, re.M)]


def fetch_crds(cache: Path) -> Path:
    """One manifest with the third-party CRDs Serin writes to, copied from their Go modules
    (``THIRD_PARTY_CRD_SOURCES``).

    Istio's ``kubernetes/customresourcedefinitions.gen.yaml`` carries every Istio API with its
    OpenAPI schema; Gateway API's standard channel (``config/crd/standard``) is what a cluster
    installs by default, and what Serin's objects must fit; Contour's and Traefik's are the ones
    their installation manifests apply; KEDA's is its ScaledObject, as its release installs it.
    """
    final = crds_dir(cache)
    manifest = final / "crds.yaml"
    if manifest.is_file():
        return manifest
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    sources: list[Path] = []
    for _, module, version, patterns in THIRD_PARTY_CRD_SOURCES:
        _log(f"fetching the CRDs of {module} {version}")
        directory = _module_dir(module, version, tmp)
        for pattern in patterns:
            found = sorted(directory.glob(pattern))
            if not found:
                raise BuildError(f"{module} {version} has no {pattern}")
            sources += found
    sources += sorted(LOCAL_CRDS.glob("*.yaml"))
    documents = [document for source in sources for document in _custom_resource_definitions(source.read_text())]
    (tmp / "crds.yaml").write_text("---\n" + "\n---\n".join(documents) + "\n")
    experimental = (
        _module_dir("sigs.k8s.io/gateway-api", GATEWAY_API_VERSION, tmp) / GATEWAY_API_EXPERIMENTAL_HTTPROUTES
    )
    shutil.copyfile(experimental, tmp / EXPERIMENTAL_HTTPROUTES_FILE)
    _finish(tmp, final)
    return manifest


def unpack_prometheus(cache: Path) -> Path:
    """Unpack Debian's prometheus package into the cache (no service is installed or started)."""
    existing = sorted((cache / "bin").glob("prometheus-*/usr/bin/prometheus"))
    if existing:
        return existing[-1]
    downloads = cache / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    _log("fetching Debian's prometheus package")
    fetched = subprocess.run(["apt-get", "download", "prometheus"], cwd=downloads, capture_output=True, text=True)
    if fetched.returncode != 0 and os.geteuid() == 0:
        # A new machine has no package lists yet.
        _log("apt-get update (package lists are missing or stale)")
        subprocess.run(["apt-get", "update"], capture_output=True, text=True)
        fetched = subprocess.run(["apt-get", "download", "prometheus"], cwd=downloads, capture_output=True, text=True)
    debs = sorted(downloads.glob("prometheus_*.deb"))
    if not debs:
        raise BuildError(
            "could not fetch Debian's prometheus package (run `apt-get update` first?):\n"
            + fetched.stdout
            + fetched.stderr
        )
    deb = debs[-1]
    version = deb.name.split("_")[1]
    target = cache / "bin" / f"prometheus-{version}"
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    unpacked = subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], capture_output=True, text=True)
    if unpacked.returncode != 0:
        raise BuildError(f"could not unpack {deb.name}: {unpacked.stderr.strip()}")
    _finish(tmp, target)
    return target / "usr" / "bin" / "prometheus"


# The Lua interpreter the unit tests run integrations/argocd's scripts with (Argo CD itself runs
# them in gopher-lua, a Lua 5.1: the scripts keep to what both accept). Debian's interpreter has
# the Lua core built in (liblua5.4-0 is for programs that embed Lua) and links libreadline, which
# slim images lack: that is unpacked beside it.
LUA_COMMAND = "lua5.4"
LUA_PACKAGES = (LUA_COMMAND, "libreadline8")


def deb_version(deb_name: str) -> str:
    """The version in a package file's name as ``apt-get download`` writes it: NAME_VERSION_ARCH.deb."""
    parts = deb_name.removesuffix(".deb").split("_")
    if len(parts) != 3 or not all(parts):
        raise BuildError(f"not a Debian package file name: {deb_name}")
    return parts[1]


def lua_wrapper(binary: str, library_dirs: tuple[str, ...]) -> str:
    """A script that runs the unpacked ``binary`` with the unpacked libraries of ``library_dirs``
    (all relative to the script's folder, so the folder may be renamed or moved)."""
    libraries = ":".join(f"$here/{folder}" for folder in library_dirs)
    return (
        "#!/bin/sh\n"
        'here="$(cd "$(dirname "$0")" && pwd)"\n'
        f'LD_LIBRARY_PATH="{libraries}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"\n'
        "export LD_LIBRARY_PATH\n"
        f'exec "$here/{binary}" "$@"\n'
    )


def cached_lua(cache: Path) -> Path | None:
    """The interpreter ``unpack_lua`` left in the cache (the newest, if several), else None."""
    found = sorted((cache / "bin").glob(f"{LUA_COMMAND}-*/{LUA_COMMAND}"))
    return found[-1] if found else None


def unpack_lua(cache: Path) -> Path:
    """Unpack Debian's Lua 5.4 interpreter and its libraries into the cache (nothing is installed);
    the path returned runs it, through a wrapper that points it at the unpacked libraries."""
    cached = cached_lua(cache)
    if cached is not None:
        return cached
    # A folder of its own, emptied first: only the packages fetched now are unpacked.
    downloads = cache / "downloads" / LUA_COMMAND
    shutil.rmtree(downloads, ignore_errors=True)
    downloads.mkdir(parents=True)
    _log(f"fetching Debian's {', '.join(LUA_PACKAGES)} packages")
    command = ["apt-get", "download", *LUA_PACKAGES]
    fetched = subprocess.run(command, cwd=downloads, capture_output=True, text=True)
    if fetched.returncode != 0 and os.geteuid() == 0:
        # A new machine has no package lists yet.
        _log("apt-get update (package lists are missing or stale)")
        subprocess.run(["apt-get", "update"], capture_output=True, text=True)
        fetched = subprocess.run(command, cwd=downloads, capture_output=True, text=True)
    debs = sorted(downloads.glob("*.deb"))
    interpreters = [deb for deb in debs if deb.name.startswith(f"{LUA_COMMAND}_")]
    if fetched.returncode != 0 or len(debs) != len(LUA_PACKAGES) or len(interpreters) != 1:
        raise BuildError(
            f"could not fetch Debian's {', '.join(LUA_PACKAGES)} packages (run `apt-get update` first?):\n"
            + fetched.stdout
            + fetched.stderr
        )
    target = cache / "bin" / f"{LUA_COMMAND}-{deb_version(interpreters[0].name)}"
    tmp = _fresh_tmp(target)
    for deb in debs:
        unpacked = subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], capture_output=True, text=True)
        if unpacked.returncode != 0:
            raise BuildError(f"could not unpack {deb.name}: {unpacked.stderr.strip()}")
    if not (tmp / "usr" / "bin" / LUA_COMMAND).is_file():
        raise BuildError(f"Debian's {LUA_COMMAND} package no longer holds usr/bin/{LUA_COMMAND}")
    library_dirs = tuple(sorted({str(library.parent.relative_to(tmp)) for library in tmp.rglob("*.so.*")}))
    wrapper = tmp / LUA_COMMAND
    wrapper.write_text(lua_wrapper(f"usr/bin/{LUA_COMMAND}", library_dirs))
    wrapper.chmod(0o755)
    ran = subprocess.run([str(wrapper), "-v"], capture_output=True, text=True)
    if ran.returncode != 0:
        raise BuildError(f"the unpacked {LUA_COMMAND} does not run: {ran.stdout}{ran.stderr}".strip())
    _finish(tmp, target)
    return target / LUA_COMMAND


def _binaries(cache: Path, prometheus: Path) -> Binaries:
    kubernetes = cache / "bin" / f"kubernetes-{kubernetes_version()}"
    return Binaries(
        etcd=cache / "bin" / f"etcd-{ETCD_VERSION}" / "etcd",
        kube_apiserver=kubernetes / "kube-apiserver",
        kube_controller_manager=kubernetes / "kube-controller-manager",
        kube_scheduler=kubernetes / "kube-scheduler",
        kubectl=kubernetes / "kubectl",
        kwok=cache / "bin" / f"kwok-{KWOK_VERSION}" / "kwok",
        prometheus=prometheus,
        crds=crds_dir(cache) / "crds.yaml",
        helm=cache / "bin" / f"helm-{HELM_VERSION}" / "helm",
        traefik=cache / "bin" / f"traefik-{TRAEFIK_VERSION}" / "traefik",
    )


def cached_binaries(cache: Path | None = None) -> Binaries | None:
    """Every binary if all are already built, else None (builds nothing)."""
    cache = cache or cache_dir()
    prometheus = sorted((cache / "bin").glob("prometheus-*/usr/bin/prometheus"))
    if not prometheus:
        return None
    binaries = _binaries(cache, prometheus[-1])
    return binaries if all(path.is_file() for path in vars(binaries).values()) else None


def ensure_binaries(cache: Path | None = None) -> Binaries:
    """Return every binary, building the missing ones (quick ones first, so they fail fast)."""
    cache = cache or cache_dir()
    prometheus = unpack_prometheus(cache)
    unpack_lua(cache)
    build_etcd(cache)
    fetch_crds(cache)
    build_kwok(cache)
    build_kstatus(cache)
    build_helm(cache)
    build_traefik(cache)
    build_kubernetes(cache)
    return _binaries(cache, prometheus)

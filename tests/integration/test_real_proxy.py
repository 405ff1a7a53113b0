"""Releases through a real proxy: Traefik routes real requests to real servers at the pods' addresses.

Traefik (built from its module) reads Serin's TraefikServices and HTTPRoutes from the API server;
the pods' servers (``localcluster.backends``) answer at the addresses of the EndpointSlices the
endpoint-slice controller wrote; Prometheus scrapes Traefik's own series and the application's,
and Serin's builtin queries judge the release on them. Everything the tests assert about who
answered is counted by the clients themselves.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest

from localcluster.dataplane import DataPlane
from localcluster.prometheus import query
from localcluster.realtraffic import Load, User
from localcluster.testing import ClusterHandle, eventually
from tests.integration.helpers import (
    METRICS,
    WEIGHTED,
    SerinServer,
    canary,
    drive,
    events,
    podinfo,
    tick_until,
)
from tests.integration.test_routers import primary_image, release

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("real-proxy")]

ERRORS = {"simulator.serin.dev/error-rate": "0.5"}
# Requests a second the users send through Traefik during a release.
RPS = 40.0


# How long Traefik may take to apply a routing object Serin changed (it watches the API server),
# and the requests in flight then to be answered.
PROPAGATION_SECONDS = 1.0


def answers_once_applied(load: Load, seconds: float = 2.0) -> Counter[tuple[str, int]]:
    """What the users were answered for ``seconds``, from when the last change reached Traefik."""
    time.sleep(PROPAGATION_SECONDS)
    load.reset()
    time.sleep(seconds)
    return load.reset().answers


def host_of(namespace: str) -> str:
    return f"podinfo.{namespace}.example"


def ingress_route(namespace: str) -> dict[str, Any]:
    """The user's IngressRoute: its host goes to the TraefikService Serin writes."""
    return {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "IngressRoute",
        "metadata": {"name": "podinfo", "namespace": namespace},
        "spec": {
            "entryPoints": ["web"],
            "routes": [
                {
                    "match": f"Host(`{host_of(namespace)}`)",
                    "kind": "Rule",
                    "services": [{"name": "podinfo", "kind": "TraefikService"}],
                }
            ],
        },
    }


def proxied_canary(namespace: str, provider: str, analysis: dict[str, Any], plane: DataPlane) -> dict[str, Any]:
    manifest = canary(namespace, analysis, provider=provider)
    if provider.startswith("gatewayapi"):
        manifest["spec"]["service"].update(gatewayRefs=[plane.gateway], hosts=[host_of(namespace)])
    return manifest


def started(
    cluster: ClusterHandle, server: SerinServer, token: str, namespace: str, manifest: dict[str, Any], plane: DataPlane
) -> None:
    """The app at 6.0.0 and its Canary initialized, and the primary answering through Traefik."""
    cluster.apply(podinfo(namespace))
    cluster.kubectl("rollout", "status", "deployment/podinfo", "-n", namespace, "--timeout=60s")
    if manifest["spec"].get("provider") == "traefik":
        cluster.apply(ingress_route(namespace))
    cluster.apply(manifest)
    drive(cluster, server, token, namespace, "Initialized")
    user = User(plane.url, host_of(namespace))
    eventually(lambda: user.get().version == "6.0.0", timeout=30, what="the primary to answer through Traefik")
    user.close()


@pytest.mark.compat
@pytest.mark.parametrize("provider", ["traefik", "gatewayapi:v1"])
def test_a_good_release_is_promoted_and_a_bad_one_rolled_back_on_what_traefik_measured(
    local_cluster: ClusterHandle,
    serin_server: SerinServer,
    tokens: dict[str, str],
    proxied_namespace: str,
    data_plane: DataPlane,
    provider: str,
) -> None:
    namespace, token = proxied_namespace, tokens["ticker"]
    started(
        local_cluster,
        serin_server,
        token,
        namespace,
        proxied_canary(namespace, provider, WEIGHTED, data_plane),
        data_plane,
    )
    with Load(data_plane.url, host_of(namespace), rps=RPS) as load:
        release(local_cluster, namespace, "6.0.1")
        tick_until(local_cluster, serin_server, token, namespace, lambda status: status.get("canaryWeight") == 20)
        load.reset()
        time.sleep(3)
        at_twenty = load.reset().versions()
        drive(local_cluster, serin_server, token, namespace, "Succeeded")
        after_promotion = answers_once_applied(load)

        release(local_cluster, namespace, "6.0.2", **ERRORS)
        drive(local_cluster, serin_server, token, namespace, "Failed")
        during_bad = load.reset().answers
        after_rollback = answers_once_applied(load)

    # Both versions answered while the canary had a fifth of the traffic.
    assert at_twenty["6.0.1"] > 0 and at_twenty["6.0.0"] > at_twenty["6.0.1"], at_twenty
    assert set(after_promotion) == {("6.0.1", 200)}, after_promotion
    # The bad version failed about half of what it served, and was judged on it.
    assert during_bad[("6.0.2", 500)] > 0, during_bad
    assert set(after_rollback) == {("6.0.1", 200)}, after_rollback
    assert primary_image(local_cluster, namespace) == "6.0.1"
    assert any("advancement success rate" in message for message in events(local_cluster, namespace))


def test_ab_testing_sends_only_the_matching_requests_to_the_canary(
    local_cluster: ClusterHandle,
    serin_server: SerinServer,
    tokens: dict[str, str],
    proxied_namespace: str,
    data_plane: DataPlane,
) -> None:
    namespace, token = proxied_namespace, tokens["ticker"]
    match = [{"headers": {"x-canary": {"exact": "insider"}}}]
    analysis = {"interval": "10s", "threshold": 2, "iterations": 3, "match": match, "metrics": METRICS}
    started(
        local_cluster,
        serin_server,
        token,
        namespace,
        proxied_canary(namespace, "gatewayapi:v1", analysis, data_plane),
        data_plane,
    )
    host = host_of(namespace)
    with (
        Load(data_plane.url, host, rps=RPS / 2) as everyone,
        Load(data_plane.url, host, rps=RPS / 2, headers={"x-canary": "insider"}) as insiders,
    ):
        release(local_cluster, namespace, "6.0.1")
        tick_until(local_cluster, serin_server, token, namespace, lambda status: status.get("iterations") == 1)
        time.sleep(PROPAGATION_SECONDS)
        everyone.reset(), insiders.reset()
        time.sleep(3)
        outside, inside = everyone.reset().answers, insiders.reset().answers
        drive(local_cluster, serin_server, token, namespace, "Succeeded")
    assert set(outside) == {("6.0.0", 200)}, outside
    assert set(inside) == {("6.0.1", 200)}, inside
    assert primary_image(local_cluster, namespace) == "6.0.1"


def test_a_user_holding_the_session_cookie_stays_on_the_canary_and_is_returned_after_promotion(
    local_cluster: ClusterHandle,
    serin_server: SerinServer,
    tokens: dict[str, str],
    proxied_namespace: str,
    data_plane: DataPlane,
) -> None:
    namespace, token = proxied_namespace, tokens["ticker"]
    analysis = {**WEIGHTED, "sessionAffinity": {"cookieName": "canary-session", "maxAge": 600}}
    started(
        local_cluster,
        serin_server,
        token,
        namespace,
        proxied_canary(namespace, "gatewayapi:v1", analysis, data_plane),
        data_plane,
    )
    with Load(data_plane.url, host_of(namespace), rps=RPS):
        release(local_cluster, namespace, "6.0.1")
        tick_until(local_cluster, serin_server, token, namespace, lambda status: status.get("canaryWeight") == 20)
        # A user the canary answered was given the cookie, and from then on the canary answers it.
        user = User(data_plane.url, host_of(namespace))
        first = eventually(
            lambda: (answer := user.get()).version == "6.0.1" and answer, timeout=30, what="a canary answer"
        )
        assert "canary-session=" in first.set_cookie and "canary-session" in user.session.cookies
        held = [user.get().version for _ in range(30)]
        tick_until(local_cluster, serin_server, token, namespace, lambda status: status.get("canaryWeight") == 40)
        held += [user.get().version for _ in range(30)]
        drive(local_cluster, serin_server, token, namespace, "Succeeded")
        # After promotion the cookie is taken back, and every user is on the new primary.
        taken_back = eventually(
            lambda: (answer := user.get()).set_cookie and "canary-session" not in user.session.cookies and answer,
            timeout=30,
            what="the session cookie taken back",
        )
        returned = [user.get() for _ in range(10)]
    assert held == ["6.0.1"] * 60, held
    assert "Max-Age=-1" in taken_back.set_cookie, taken_back
    assert {(answer.version, answer.status) for answer in returned} == {("6.0.1", 200)}, returned
    user.close()


def test_a_mirrored_blue_green_catches_the_canarys_errors_while_every_answer_came_from_the_primary(
    local_cluster: ClusterHandle,
    serin_server: SerinServer,
    tokens: dict[str, str],
    proxied_namespace: str,
    data_plane: DataPlane,
) -> None:
    namespace, token = proxied_namespace, tokens["ticker"]
    analysis = {"interval": "10s", "threshold": 2, "iterations": 4, "mirror": True, "metrics": METRICS}
    manifest = proxied_canary(namespace, "traefik", analysis, data_plane)
    started(local_cluster, serin_server, token, namespace, manifest, data_plane)
    with Load(data_plane.url, host_of(namespace), rps=RPS) as load:
        release(local_cluster, namespace, "6.0.1", **ERRORS)
        tick_until(local_cluster, serin_server, token, namespace, lambda status: status.get("iterations") == 1)
        spec = local_cluster.get_json("traefikservice", "podinfo", "-n", namespace)["spec"]
        assert [mirror["name"] for mirror in spec["mirroring"]["mirrors"]] == ["podinfo-canary"], spec
        drive(local_cluster, serin_server, token, namespace, "Failed")
        answers = load.reset().answers
    # Users were answered by the primary only, and without an error.
    assert set(answers) == {("6.0.0", 200)}, answers
    # The canary's pods answered the copies, about half with an error, which failed the release.
    served = data_plane.served()
    canary_errors = sum(
        entry["count"]
        for entry in served
        if entry["namespace"] == namespace
        and not entry["pod"].startswith("podinfo-primary-")
        and entry["status"] == 500
    )
    assert canary_errors > 0, served
    assert primary_image(local_cluster, namespace) == "6.0.0"
    assert "weighted" in local_cluster.get_json("traefikservice", "podinfo", "-n", namespace)["spec"]
    assert any("advancement success rate" in message for message in events(local_cluster, namespace))


def test_traefiks_own_series_are_what_the_builtin_traefik_queries_read(
    local_cluster: ClusterHandle,
    serin_server: SerinServer,
    tokens: dict[str, str],
    proxied_namespace: str,
    data_plane: DataPlane,
) -> None:
    """The series names and labels Flagger's and Serin's builtin Traefik queries select, as Traefik
    v3.7 exports them: requests to the canary's Service, reached through the TraefikService."""
    namespace, token = proxied_namespace, tokens["ticker"]
    started(
        local_cluster,
        serin_server,
        token,
        namespace,
        proxied_canary(namespace, "traefik", WEIGHTED, data_plane),
        data_plane,
    )
    with Load(data_plane.url, host_of(namespace), rps=RPS):
        release(local_cluster, namespace, "6.0.1")
        tick_until(local_cluster, serin_server, token, namespace, lambda status: status.get("canaryWeight") == 20)
        selector = f'service=~"{namespace}-podinfo-canary-[0-9a-zA-Z-]+@kubernetescrd"'

        def counted() -> list[dict[str, Any]] | None:
            found = query(local_cluster.urls["prometheus"], f"traefik_service_requests_total{{{selector}}}")
            return found or None

        samples = eventually(counted, timeout=30, what="Traefik's requests to the canary scraped")
    labels = {key for sample in samples for key in sample["metric"]}
    assert {"service", "code", "method", "protocol"} <= labels, json.dumps(samples)
    assert {sample["metric"]["service"] for sample in samples} == {f"{namespace}-podinfo-canary-9898@kubernetescrd"}

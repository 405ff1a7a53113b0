"""Plays the data planes of the local test cluster: Istio's sidecars, a Gateway API gateway, the
NGINX ingress controller, Contour's Envoy, Traefik and Linkerd's proxies.

The local cluster runs a real kube-apiserver with fake nodes: pods run no containers, so nothing
serves requests and nothing reports telemetry. This package stands in for the data plane, and only
for that. It watches the routing objects (Istio VirtualServices, Gateway API HTTPRoutes, Ingresses,
Contour HTTPProxies, TraefikServices, SMI TrafficSplits), Services and workloads (``watching``)
and, every second, pushes a synthetic request stream through each routing object as its data plane
would (which route a request takes, then a destination by weight), and exports the metrics those
data planes and the application report (``export``).

How each version behaves comes from its Deployment's pod template annotations:
``simulator.serin.dev/error-rate`` (share of 500 responses, 0..1) and
``simulator.serin.dev/latency-ms`` (mean latency). A Service annotated
``simulator.serin.dev/rps`` is also called directly, as by a load tester (``traffic``).

Modules: ``routes`` (the data plane's model: route tables, matching, weighted choice), ``istio``,
``gatewayapi``, ``nginx``, ``contour``, ``traefik`` and ``linkerd`` (reading each API into that model, as its
data plane routes), ``examples`` (requests that satisfy a match, for A/B routes), ``cluster``
(Services, Deployments, behaviour), ``traffic`` (the simulation), ``export`` (metrics), ``watching``
(a list, then a watch, per kind), ``cli`` (the process: watch, simulate, serve /metrics).

It does not: send real HTTP, read DestinationRules (subsets are ignored; a host's endpoints are
every ready pod its Service selects), apply filters, retries, timeouts, fault injection, mirroring
or redirects, or modify anything in the cluster. It only ever lists and watches objects.
"""

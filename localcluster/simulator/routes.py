"""The data plane's view of routing, whatever API described it: route tables of http routes, each
with match rules and weighted destinations, and how a request picks its route and destination.

Each routing API has its own module that turns its objects into a ``RouteTable`` (``istio``,
``gatewayapi``); everything downstream (matching, request synthesis, traffic) works on these types.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

MatchKind = Literal["exact", "prefix", "regex"]
_MATCH_KINDS: tuple[MatchKind, ...] = ("exact", "prefix", "regex")


@dataclass(frozen=True)
class StringMatch:
    """How one value is matched: exactly, by prefix, or by a regex that must match all of it."""

    kind: MatchKind
    value: str

    def matches(self, actual: str | None, *, ignore_case: bool = False) -> bool:
        if actual is None:
            return False
        expected = self.value
        if ignore_case:
            actual, expected = actual.lower(), expected.lower()
        if self.kind == "exact":
            return actual == expected
        if self.kind == "prefix":
            return actual.startswith(expected)
        try:
            # Envoy's safe_regex must match the whole value, not a substring.
            flags = re.IGNORECASE if ignore_case else 0
            return re.fullmatch(self.value, actual, flags) is not None
        except re.error:
            return False


@dataclass(frozen=True)
class MatchRule:
    """One entry of an http route's ``match`` list; all its conditions must hold."""

    headers: tuple[tuple[str, StringMatch], ...] = ()
    query_params: tuple[tuple[str, StringMatch], ...] = ()
    uri: StringMatch | None = None
    method: StringMatch | None = None
    without_headers: tuple[tuple[str, StringMatch], ...] = ()
    ignore_uri_case: bool = False
    unsupported: tuple[str, ...] = ()
    """Condition keys present in the entry that the simulator cannot evaluate."""


@dataclass(frozen=True)
class Destination:
    host: str
    weight: int
    # What the data plane calls this destination in its metrics, when it names it (NGINX's canary upstream).
    tag: str = ""
    # A Set-Cookie header the data plane adds to this destination's responses.
    set_cookie: str = ""


@dataclass(frozen=True)
class HttpRoute:
    name: str
    matches: tuple[MatchRule, ...]
    """Empty means the route matches every request."""
    destinations: tuple[Destination, ...]
    # A Set-Cookie header the data plane adds to every response of this route.
    set_cookie: str = ""
    # Where the route also copies requests to (its weight: the percent copied); responses dropped.
    mirror: Destination | None = None

    @property
    def sticky(self) -> bool:
        """A route for the holders of a cookie the data plane sets (Serin's and Flagger's session
        affinity): clients reach it by having been given the cookie, never by guessing it."""
        return self.name in ("sticky", "sticky-route")


@dataclass(frozen=True)
class RouteTable:
    """One routing object (a VirtualService, an HTTPRoute, ...) as the data plane applies it:
    its routes in the order they are tried, the first that matches a request wins."""

    kind: str
    name: str
    namespace: str
    routes: tuple[HttpRoute, ...]


@dataclass(frozen=True)
class SyntheticRequest:
    """What the route matcher looks at.  Header names are lower case, as Envoy sees them."""

    headers: Mapping[str, str] = field(default_factory=dict)
    query_params: Mapping[str, str] = field(default_factory=dict)
    path: str = "/"
    method: str = "GET"


PLAIN_REQUEST = SyntheticRequest()


def as_mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_sequence(value: object) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def rule_matches(rule: MatchRule, request: SyntheticRequest) -> bool:
    if rule.unsupported:
        return False
    for name, header_match in rule.headers:
        if not header_match.matches(request.headers.get(name)):
            return False
    for name, header_match in rule.without_headers:
        if header_match.matches(request.headers.get(name)):
            return False
    for name, query_match in rule.query_params:
        if not query_match.matches(request.query_params.get(name)):
            return False
    if rule.uri is not None and not rule.uri.matches(request.path, ignore_case=rule.ignore_uri_case):
        return False
    return rule.method is None or rule.method.matches(request.method)


def route_matches(route: HttpRoute, request: SyntheticRequest) -> bool:
    if not route.matches:
        return True
    return any(rule_matches(rule, request) for rule in route.matches)


def select_route(table: RouteTable, request: SyntheticRequest) -> HttpRoute | None:
    """The first http route that matches, as Envoy evaluates them: in order."""
    for route in table.routes:
        if route_matches(route, request):
            return route
    return None


def choose_destination(destinations: Sequence[Destination], rng: random.Random) -> Destination | None:
    """Picks a destination in proportion to its weight; None when all weights are 0."""
    total = sum(d.weight for d in destinations)
    if total <= 0:
        return None
    point = rng.randrange(total)
    for destination in destinations:
        if point < destination.weight:
            return destination
        point -= destination.weight
    raise AssertionError("unreachable: point is below the total weight")


def set_cookie_header(headers: object) -> str:
    """The Set-Cookie value among response headers to add (``{name: value}`` or a list of
    ``{name, value}``), whatever the case of the header's name; empty when there is none."""
    pairs = (
        [(str(k), v) for k, v in as_mapping(headers).items()]
        if isinstance(headers, Mapping)
        else [(str(as_mapping(e).get("name", "")), as_mapping(e).get("value")) for e in as_sequence(headers)]
    )
    return next((str(value) for name, value in pairs if name.lower() == "set-cookie" and isinstance(value, str)), "")

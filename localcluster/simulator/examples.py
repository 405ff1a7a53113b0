"""Requests that satisfy a match rule: the shortest value each header, query parameter or path
condition accepts (for regexes, built from the pattern itself), so that synthetic clients reach
A/B routes as real users carrying the header or cookie would."""

from __future__ import annotations

import re
import string

from localcluster.simulator.routes import (
    PLAIN_REQUEST,
    MatchRule,
    RouteTable,
    StringMatch,
    SyntheticRequest,
    rule_matches,
)


class _UnsupportedRegex(Exception):
    pass


_ESCAPE_EXAMPLES = {"d": "0", "D": "a", "w": "a", "W": "-", "s": " ", "S": "x", "n": "\n", "t": "\t", "r": "\r"}
_ZERO_WIDTH_ESCAPES = frozenset("bBAzZ")
_CLASS_CANDIDATES = string.ascii_letters + string.digits + "-_.=;:/ " + string.punctuation
_BOUNDED_REPEAT = re.compile(r"\{(\d+)(,\d*)?\}")


class _ShortestExample:
    """Builds the shortest string a (simple) regex accepts.

    Handles literals, escapes, character classes, groups, alternation and
    quantifiers, which covers the patterns people write in VirtualServices.
    Look-arounds and back references are refused; the caller verifies the
    result with ``re.fullmatch`` anyway.
    """

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.pos = 0

    def build(self) -> str:
        result = self._alternation()
        if self.pos != len(self.pattern):
            raise _UnsupportedRegex(self.pattern)
        return result

    def _peek(self) -> str:
        return self.pattern[self.pos] if self.pos < len(self.pattern) else ""

    def _alternation(self) -> str:
        first = self.as_sequence()
        while self._peek() == "|":
            self.pos += 1
            self.as_sequence()
        return first

    def as_sequence(self) -> str:
        parts: list[str] = []
        while self._peek() not in ("", "|", ")"):
            atom = self._atom()
            parts.append(atom * self._min_repeat())
        return "".join(parts)

    def _min_repeat(self) -> int:
        char = self._peek()
        if char in ("*", "?"):
            self.pos += 1
            count = 0
        elif char == "+":
            self.pos += 1
            count = 1
        elif char == "{" and (bounded := _BOUNDED_REPEAT.match(self.pattern, self.pos)):
            self.pos = bounded.end()
            count = int(bounded.group(1))
        else:
            return 1
        if self._peek() in ("?", "+"):
            self.pos += 1
        return count

    def _atom(self) -> str:
        char = self.pattern[self.pos]
        self.pos += 1
        if char in "^$":
            return ""
        if char == ".":
            return "x"
        if char == "\\":
            return self._escape()
        if char == "[":
            return self._char_class()
        if char == "(":
            return self._group()
        if char in "*+?{":
            raise _UnsupportedRegex(self.pattern)
        return char

    def _escape(self) -> str:
        if self.pos >= len(self.pattern):
            raise _UnsupportedRegex(self.pattern)
        char = self.pattern[self.pos]
        self.pos += 1
        if char in _ZERO_WIDTH_ESCAPES:
            return ""
        if char.isdigit():
            raise _UnsupportedRegex(self.pattern)
        return _ESCAPE_EXAMPLES.get(char, char)

    def _char_class(self) -> str:
        start = self.pos - 1
        end = self.pos
        if end < len(self.pattern) and self.pattern[end] == "^":
            end += 1
        if end < len(self.pattern) and self.pattern[end] == "]":
            end += 1
        while end < len(self.pattern) and self.pattern[end] != "]":
            end += 2 if self.pattern[end] == "\\" else 1
        if end >= len(self.pattern):
            raise _UnsupportedRegex(self.pattern)
        self.pos = end + 1
        try:
            char_class = re.compile(self.pattern[start : end + 1])
        except re.error as err:
            raise _UnsupportedRegex(self.pattern) from err
        for candidate in _CLASS_CANDIDATES:
            if char_class.fullmatch(candidate):
                return candidate
        raise _UnsupportedRegex(self.pattern)

    def _group(self) -> str:
        if self.pattern.startswith("?:", self.pos):
            self.pos += 2
        elif self.pattern.startswith("?P<", self.pos) or self.pattern.startswith("?<", self.pos):
            close = self.pattern.find(">", self.pos)
            if close < 0 or self.pattern[close - 1] in "=!":
                raise _UnsupportedRegex(self.pattern)
            self.pos = close + 1
        elif self._peek() == "?":
            raise _UnsupportedRegex(self.pattern)
        inner = self._alternation()
        if self._peek() != ")":
            raise _UnsupportedRegex(self.pattern)
        self.pos += 1
        return inner


def example_for(match: StringMatch) -> str | None:
    """A value that satisfies ``match``, or None when none can be produced."""
    if match.kind in ("exact", "prefix"):
        return match.value
    try:
        candidate = _ShortestExample(match.value).build()
    except (_UnsupportedRegex, IndexError):
        return None
    return candidate if match.matches(candidate) else None


def synthesize_request(rule: MatchRule) -> SyntheticRequest | None:
    """A request that carries exactly what ``rule`` asks for, or None if impossible.

    For Flagger's cookie rule ``cookie: {regex: "^(.*?;)?(canary=always)(;.*)?$"}``
    this yields the cookie header ``canary=always``.
    """
    if rule.unsupported:
        return None
    headers: dict[str, str] = {}
    for name, header_match in rule.headers:
        value = example_for(header_match)
        if value is None:
            return None
        headers[name] = value
    query: dict[str, str] = {}
    for name, query_match in rule.query_params:
        value = example_for(query_match)
        if value is None:
            return None
        query[name] = value
    path = PLAIN_REQUEST.path
    if rule.uri is not None:
        uri = example_for(rule.uri)
        if uri is None:
            return None
        path = uri
    method = PLAIN_REQUEST.method
    if rule.method is not None:
        wanted = example_for(rule.method)
        if wanted is None:
            return None
        method = wanted
    request = SyntheticRequest(headers=headers, query_params=query, path=path, method=method)
    # Conflicting conditions (e.g. a header both required and excluded) cannot be satisfied.
    return request if rule_matches(rule, request) else None


def synthesizable_requests(table: RouteTable) -> tuple[SyntheticRequest, ...]:
    """One request per match rule of ``table`` that a synthetic client can satisfy (not the
    sticky routes' cookies, which clients only have once the data plane gave them one)."""
    found: list[SyntheticRequest] = []
    for route in table.routes:
        if route.sticky:
            continue
        for rule in route.matches:
            request = synthesize_request(rule)
            if request is not None:
                found.append(request)
    return tuple(found)

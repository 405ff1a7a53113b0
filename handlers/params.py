"""What the authenticated endpoints (``/tick``, ``/replay``, ``/metrics``) share: checking query
parameters before anything is asked of the API server, JSON errors, and the caller's bearer token,
checked by the API server (TokenReview, then SubjectAccessReview on canaries.serin.dev, or on a
path for ``/metrics``)."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Response, current_app, jsonify, request

from serin.engine import Engine
from serin.kube.auth import Identity, authenticate, may_on_canaries

_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no", ""}
# Kubernetes names: a namespace is a DNS label, a Canary's name a DNS subdomain.
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


# Far deeper than any Kubernetes object, far shallower than what would exhaust Python's stack.
MAX_NESTING = 100
# Every byte but brackets and braces, which nested_deeper_than keeps.
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_OPENING = frozenset(b"[{")


class BadRequest(ValueError):
    pass


class BodyTooLarge(ValueError):
    """The body is over the size limit."""


def read_body(limit: int, needs: str) -> bytes:
    """The whole body, or BodyTooLarge (``needs`` says what the endpoint takes): never one cut
    short at the limit.

    With a Content-Length the size is known up front (and checked before this). A chunked body
    has none, and werkzeug would stop reading it at the limit without a word: it is read here,
    one byte past the limit, to tell a body that fits from one that does not.
    """
    if request.content_length is not None:
        return request.get_data(cache=False)
    stream, parts, size = request.environ["wsgi.input"], [], 0
    while size <= limit:
        part = stream.read(min(65536, limit + 1 - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
    if size > limit:
        raise BodyTooLarge(f"body is larger than {limit} bytes; {needs}")
    return b"".join(parts)


def decoded_json(body: bytes) -> Any:
    """The JSON in ``body``; BadRequest saying why there is none. Nesting is checked first, since
    a decoder recursing into 100,000 brackets would exhaust the stack."""
    if nested_deeper_than(body, MAX_NESTING):
        raise BadRequest(f"body nests deeper than {MAX_NESTING} levels; no Kubernetes object does")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"body is not JSON: {error}") from None


def nested_deeper_than(body: bytes, limit: int) -> bool:
    """Whether the JSON in ``body`` nests arrays and objects deeper than ``limit`` (strings skipped),
    found without decoding it: a decoder recursing into 100,000 brackets would exhaust the stack.

    Linear, and done by bytes methods rather than a loop over tokens, since every review pays it:
    escaped backslashes, then escaped quotes, are dropped, so every quote left opens or closes a
    string; every other piece between quotes is outside the strings (all that follows an opening
    quote with no end is inside it: the body is no JSON, which the decoder then says). Only the
    brackets of those pieces are counted, and walked one by one only when there are more opening
    ones than ``limit``. A body with no more opening brackets than ``limit``, strings and all, is
    not looked at further.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(unescaped.split(b'"')[::2]).translate(None, _NOT_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False
    depth = 0
    for byte in brackets:
        depth += 1 if byte in _OPENING else -1
        if depth > limit:
            return True
    return False


def flag(name: str) -> bool:
    value = request.args.get(name, "").lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest(f"query parameter {name} must be true or false, not {value!r}")


def name(parameter: str, pattern: re.Pattern[str], what: str) -> str | None:
    value = request.args.get(parameter) or None
    if value is not None and not pattern.fullmatch(value):
        raise BadRequest(f"query parameter {parameter} must be {what}, not {value[:100]!r}")
    return value


def canary_names() -> tuple[str | None, str | None]:
    """``namespace`` and ``name``, each checked; a name needs its namespace."""
    namespace = name("namespace", DNS_LABEL, "a namespace name (a DNS-1123 label)")
    canary = name("name", DNS_SUBDOMAIN, "a Canary name (a DNS-1123 subdomain)")
    if canary and not namespace:
        raise BadRequest(f"name needs a namespace: {request.method} {request.path}?namespace=NS&name=NAME")
    return namespace, canary


def oversized(needs: str, limit: int | None = None) -> tuple[Response, int] | None:
    """The 413 answer to a body larger than ``limit`` (default: the server's limit; ``needs``: what
    the endpoint takes)."""
    limit = current_app.config["MAX_CONTENT_LENGTH"] if limit is None else limit
    if request.content_length is not None and request.content_length > limit:
        return error(413, f"body is larger than {limit} bytes; {request.method} {request.path} needs {needs}")
    return None


def error(status: int, message: str, **headers: str) -> tuple[Response, int]:
    response = jsonify(error=message)
    response.headers.update(headers)
    return response, status


def bearer_token() -> str:
    """The request's bearer token; empty when it sends none."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def refused(engine: Engine, verb: str, namespace: str | None, name: str | None = None) -> tuple[Response, int] | None:
    """The 401 or 403 answer when the bearer token's owner may not ``verb`` canaries.serin.dev in
    ``namespace`` (None: in every namespace); None when they may. KubeError when the API server
    cannot be asked."""
    return refusal(denied(engine, bearer_token(), verb, namespace, name))


def refusal(denial: tuple[int, str] | None) -> tuple[Response, int] | None:
    """The JSON answer to a ``denial`` (401 or 403, the reason); None for none."""
    if denial is None:
        return None
    status, message = denial
    if status == 401:
        return error(status, message, **{"WWW-Authenticate": 'Bearer realm="serin"'})
    return error(status, message)


def denied(
    engine: Engine, token: str, verb: str, namespace: str | None, name: str | None = None
) -> tuple[int, str] | None:
    """Why the token's owner may not ``verb`` canaries.serin.dev in ``namespace`` (``name``, when
    given; None: in every namespace served): (401 or 403, the reason); None when they may.
    KubeError when the API server cannot be asked."""
    identity = caller(engine, token, engine.settings.token_audience)
    if isinstance(identity, str):
        return 401, identity
    # For a namespaced install, every namespace is each one it serves: a RoleBinding in each grants
    # a whole tick, where a whole-cluster install asks for all namespaces at once.
    for where in (namespace,) if namespace else engine.settings.scope.lists(None):
        allowed, reason = may_on_canaries(engine.store, identity, verb, where, name)
        if not allowed:
            what = (f"canary {name} in " if name else "") + (f"namespace {where}" if where else "all namespaces")
            detail = f" ({reason})" if reason else ""
            return 403, f"{identity.username} may not {verb} canaries.serin.dev in {what}{detail}"
    return None


def not_served(engine: Engine, namespace: str | None) -> str | None:
    """Why this install does not act in ``namespace`` (None: it does, or no namespace was named)."""
    return engine.settings.scope.refusal(namespace) if namespace else None


def caller(engine: Engine, token: str, audience: str) -> Identity | str:
    """The token's owner, as the API server vouches for it for ``audience`` (empty: its own); else
    what a 401 tells the caller. KubeError when the API server cannot be asked."""
    if not token:
        return f"missing bearer token: send 'Authorization: Bearer <token>' ({how_to_get_a_token(audience)})"
    identity = authenticate(engine.store, token, audience)
    return identity if identity is not None else not_accepted(audience)


def not_accepted(audience: str) -> str:
    """What to tell the caller of a token the API server did not accept."""
    accepted = f" for audience {audience}" if audience else ""
    return f"the API server did not accept this token{accepted} ({how_to_get_a_token(audience)})"


def how_to_get_a_token(audience: str) -> str:
    """Where a caller gets a token Serin takes."""
    flag = f" --audience {audience}" if audience else ""
    return f"for example from `kubectl create token ACCOUNT{flag}`"

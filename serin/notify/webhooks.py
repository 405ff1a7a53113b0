"""Outgoing webhook gates: the JSON payload Flagger's hooks receive, and a ``HookCaller`` that POSTs it.

Each payload also carries an idempotency key, in its body (``idempotencyKey``) and in the
``Idempotency-Key`` header: Serin sends a step's news at least once (a tick that dies before it
has stored that it sent them leaves them to the next), and a receiver that keeps the keys it has
seen can act on each request once.

A hook passes when it answers 2xx up to 202 within its timeout; anything else (a higher status, a
timeout, a refused connection) is a failed ``HookResult`` with a message fit for an event. A hook
that could not be asked (unreachable, timed out, 429 or 5xx) is a *temporary* failure, not an
answer. What a failure means (wait, failed check, hold, roll back) is the caller's business,
decided by the hook's type.

This module must not raise out of ``call``, interpret hook types or read Canary status itself.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import requests

from serin import egress
from serin.model import Canary, Webhook
from serin.ports import HookResult

MAX_OK_STATUS = 202
# What is read of a hook's answer: its status is the answer, its body only explains a failure.
MAX_HOOK_ANSWER_BYTES = 64 * 1024
DEFAULT_BACKOFF_SECONDS = 1.0
# Statuses worth asking again: overload and server-side failures. 501 (not implemented) and 4xx
# will not change on a retry, and 203-299/3xx are answers, just not a yes.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# The header of draft-ietf-httpapi-idempotency-key-header, whose value is a quoted string.
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Keys are name-based UUIDs (version 5) in a namespace of Serin's own: computed again from the
# same step and hook, on any replica, they come out the same, with nothing more stored.
KEY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "hooks.serin.dev")


def idempotency_key(canary: Canary, step: str, hook: Webhook, position: int, *request: str) -> str:
    """The key of one request to a hook in one step, the same every time that request is sent
    (a retry, a later tick sending what a tick that died had recorded) and another for any other.

    ``step`` is the step's id, kept in the Canary's status until its hooks are sent; ``position``
    is the hook's among the Canary's hooks of its type (two may share a name); ``request`` tells
    apart the requests one hook gets in one step (an event hook hears each Event of it)."""
    parts = [canary.uid, canary.namespace, canary.name, step, hook.type.value, str(position), hook.name, *request]
    return str(uuid.uuid5(KEY_NAMESPACE, json.dumps(parts)))


def hook_payload(
    canary: Canary,
    phase: str,
    checksum: str,
    hook: Webhook,
    key: str,
    extra_metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The body POSTed to a hook: Flagger's fields as Flagger sends them (receivers written for it
    read them), and the request's ``key`` (see ``idempotency_key``). ``extra_metadata`` wins over
    the hook's own metadata."""
    return {
        "name": canary.name,
        "namespace": canary.namespace,
        "phase": phase,
        "checksum": checksum,
        "metadata": {**hook.metadata, **(extra_metadata or {})},
        "idempotencyKey": key,
    }


def event_payload(
    canary: Canary,
    phase: str,
    checksum: str,
    hook: Webhook,
    message: str,
    event_type: str,
    timestamp: datetime | float,
    key: str,
) -> dict[str, Any]:
    """The body of an ``event`` hook: the event's message, type (Normal/Warning) and time in metadata.

    ``timestamp`` is a datetime (naive means UTC) or Unix seconds; it is sent as Unix milliseconds in a
    string, as Flagger does.
    """
    if isinstance(timestamp, datetime):
        aware = timestamp if timestamp.tzinfo is not None else timestamp.replace(tzinfo=UTC)
        seconds = aware.timestamp()
    else:
        seconds = float(timestamp)
    event = {"eventMessage": message, "eventType": event_type, "timestamp": str(int(seconds * 1000))}
    return hook_payload(canary, phase, checksum, hook, key, event)


def idempotency_header(payload: Mapping[str, Any]) -> dict[str, str]:
    """The ``Idempotency-Key`` header of a payload that has a key, as a structured-field string."""
    key = payload.get("idempotencyKey")
    if not isinstance(key, str) or not key:
        return {}
    return {IDEMPOTENCY_HEADER: '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'}


class HttpHookCaller:
    """POSTs JSON payloads to webhook gates; ``session`` is used as given (proxies, TLS, auth)."""

    def __init__(
        self,
        session: requests.Session | None = None,
        backoff_seconds: float = DEFAULT_BACKOFF_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session if session is not None else egress.session()
        self.backoff_seconds = backoff_seconds
        self._sleep = sleep
        self._clock = clock

    def call(self, hook: Webhook, payload: Mapping[str, Any]) -> HookResult:
        """POST ``payload`` to the hook, retrying up to ``hook.retries`` times; never raises.

        As in Flagger, the hook's timeout bounds the whole call, retries and waits included, so a
        hook with retries cannot hold a tick longer than its timeout says.
        """
        # A bounded loop rather than urllib3's Retry: the retry count is per hook while an adapter's
        # Retry is fixed when it is mounted (one adapter per call would mean one pool per call, and
        # mounting on a shared session races), and the loop can share the hook's single deadline
        # between attempts, which per-attempt timeouts cannot.
        deadline = self._clock() + hook.timeout_seconds
        attempts = 0
        message = f"timed out: timeout {hook.timeout_seconds:g}s leaves no time to call {hook.url}"
        temporary = True
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            attempts += 1
            ok, temporary, message = self._attempt(hook, payload, remaining)
            if ok:
                return HookResult(hook.name, True, message)
            if not temporary or attempts > hook.retries:
                break
            wait = self.backoff_seconds * 2 ** (attempts - 1)
            if self._clock() + wait >= deadline:
                break
            self._sleep(wait)
        if attempts > 1:
            message = f"{message} (after {attempts} attempts)"
        return HookResult(hook.name, False, message, temporary=temporary)

    def _attempt(self, hook: Webhook, payload: Mapping[str, Any], timeout: float) -> tuple[bool, bool, str]:
        """One POST, whole within ``timeout``: (ok, temporary failure worth asking again, message).

        A hook's answer is reported by its status and, when it is JSON, its ``error`` text: the
        rest of the body is the hook's own business (see its logs), never repeated into Events.
        """
        try:
            answer = egress.fetch(
                self.session,
                "POST",
                hook.url,
                timeout,
                max_bytes=MAX_HOOK_ANSWER_BYTES,
                json=dict(payload),
                headers=idempotency_header(payload),
                verify=not hook.disable_tls,
            )
        except egress.NoAnswerInTime:
            return False, True, f"timed out after {timeout:.3g}s calling {hook.url}"
        except egress.EgressError as error:
            # Only a refusal of the install's policy, or an address that is no URL, stays so.
            return False, isinstance(error, egress.Unreachable), f"cannot reach {hook.url}: {error}"
        except (ValueError, TypeError) as error:
            # Payloads JSON cannot carry: asking again gives the same answer.
            return False, False, f"cannot call {hook.url}: {error}"
        if answer.status <= MAX_OK_STATUS:
            return True, False, f"status {answer.status}"
        said = egress.excerpt(answer) if answer.body else ""
        text = f"status {answer.status}: {said}" if said else f"status {answer.status}"
        return False, answer.status in RETRYABLE_STATUSES, text

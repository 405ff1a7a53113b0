"""Idempotency keys of hook requests: the same every time one step's request is sent again, by
any tick, and another for every other request and step."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from serin.decide import Decision, Event
from serin.model import HookType, Webhook, parse_canary
from serin.ports import HookResult
from serin.reconcile import Reconciler, claimed_for_hooks, pending_of
from serin.status import CanaryStatus, format_time

from .test_reconcile import NOW, CountingStore, canary

HOOKS = [
    {"name": "notify", "type": "post-rollout", "url": "http://hooks.test/notify"},
    {"name": "news", "type": "event", "url": "http://hooks.test/news"},
    {"name": "load", "type": "pre-rollout", "url": "http://hooks.test/load"},
]
PROMOTED = (
    {"type": "Normal", "reason": "Synced", "message": "Routing all traffic to primary"},
    {"type": "Normal", "reason": "Synced", "message": "Promotion completed! Scaling down web.shop"},
)


class RecordingHooks:
    """Every hook request: the hook's name and the payload's key; each one answered yes."""

    def __init__(self) -> None:
        self.keys: list[tuple[str, str]] = []

    def call(self, hook: Webhook, payload: Mapping[str, Any]) -> HookResult:
        self.keys.append((hook.name, payload["idempotencyKey"]))
        return HookResult(hook.name, True, "status 200")


def with_hooks(**status: Any) -> dict[str, Any]:
    """Canary web, not due, with a post-rollout, an event and a pre-rollout hook."""
    raw = canary("shop", "web", phase="Progressing", analysed=NOW - datetime.timedelta(seconds=5))
    raw["spec"]["analysis"]["webhooks"] = HOOKS
    raw["status"].update(status)
    return raw


def recorded(step: str) -> dict[str, Any]:
    """A step a tick recorded, then died before sending: its claim ran out, its news are pending."""
    claim = format_time(NOW - datetime.timedelta(minutes=1))
    pending = {"step": step, "events": list(PROMOTED), "hooks": ["post-rollout"]}
    return with_hooks(serin={"claimedUntil": claim, "pending": pending})


def ticker(store: CountingStore, hooks: RecordingHooks) -> Reconciler:
    return Reconciler(
        store=store,  # type: ignore[arg-type]
        router_for=lambda provider: None,  # type: ignore[arg-type, return-value]
        metrics_for=lambda config: None,  # type: ignore[arg-type, return-value]
        hooks=hooks,
        default_metrics_server="http://prometheus",
        clock=lambda: NOW,
    )


def sent(raw: dict[str, Any]) -> list[tuple[str, str]]:
    hooks = RecordingHooks()
    (report,) = ticker(CountingStore([raw]), hooks).tick()
    assert report.error is None, report.error
    return hooks.keys


def test_a_recorded_step_sent_again_has_the_same_keys_and_the_next_step_others() -> None:
    first = sent(recorded("2026-01-01T12:02:00Z/0a1b2c3d"))
    # The tick that sent them died too before storing it: the next sends them again.
    again = sent(recorded("2026-01-01T12:02:00Z/0a1b2c3d"))
    following = sent(recorded("2026-01-01T12:02:30Z/4e5f6a7b"))
    # One request per Event to the event hook, one to the post-rollout hook, each its own key.
    assert [name for name, _ in first] == ["news", "news", "notify"]
    assert len({key for _, key in first}) == 3
    assert again == first
    assert {key for _, key in following}.isdisjoint(key for _, key in first)


def test_a_step_taken_over_from_a_tick_that_died_asks_its_gates_with_the_same_keys() -> None:
    parsed = parse_canary(with_hooks())
    released = CanaryStatus.from_dict(with_hooks()["status"])
    claimed = claimed_for_hooks(released, NOW)
    # The claimer died: its claim ran out, unreleased. The tick that takes the step over...
    later = NOW + datetime.timedelta(minutes=5)
    taken_over = claimed_for_hooks(claimed, later)
    # ...and a later step, once the first was stored (its claim released).
    stored = taken_over.replace(claimed_until=None, claimed_step="")
    following = claimed_for_hooks(stored, later)
    assert claimed.claimed_step and taken_over.claimed_step == claimed.claimed_step
    assert following.claimed_step not in ("", claimed.claimed_step)
    assert CanaryStatus.from_dict(claimed.to_dict()) == claimed

    def gate_keys(status: CanaryStatus) -> list[tuple[str, str]]:
        hooks = RecordingHooks()
        ticker(CountingStore([]), hooks).call_hooks(parsed, HookType.PRE_ROLLOUT, status, status.claimed_step)
        return hooks.keys

    assert gate_keys(taken_over) == gate_keys(claimed)
    assert gate_keys(following)[0][1] != gate_keys(claimed)[0][1]
    # The news of the step go under its id too: one step, one set of keys.
    decision = Decision(claimed, "promoted", events=(Event("Normal", "Synced", "Promotion completed!"),))
    news = pending_of(decision, later, parsed, taken_over.claimed_step)
    assert news is not None and news.step == claimed.claimed_step


def test_keys_tell_apart_canaries_hooks_and_events() -> None:
    first = sent(recorded("2026-01-01T12:02:00Z/0a1b2c3d"))
    other = recorded("2026-01-01T12:02:00Z/0a1b2c3d")
    other["metadata"]["uid"] = "uid-another-web"
    assert {key for _, key in sent(other)}.isdisjoint(key for _, key in first)

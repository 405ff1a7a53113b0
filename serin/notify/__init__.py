"""Calls out of Serin to the systems of its users: webhook gates."""

from serin.notify.webhooks import HttpHookCaller, event_payload, hook_payload

__all__ = ["HttpHookCaller", "event_payload", "hook_payload"]

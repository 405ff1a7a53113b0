"""The store's clock: the API server's time, learnt from the Date of its answers, so that claims and
due times written by one replica mean the same to another whatever their own clocks say."""

from __future__ import annotations

import datetime
import email.utils
from typing import Any, cast

from kubernetes import client

from serin.kube.store import KubeStore


class DatedResponse:
    def __init__(self, date: str | None) -> None:
        self.status, self.reason, self.data = 200, "OK", b"{}"
        self.headers = {"Date": date} if date is not None else {}

    def read(self) -> bytes:
        return self.data


class DatedApi:
    """Answers every request with the API server's ``Date``."""

    def __init__(self, date: str | None) -> None:
        self.date = date

    def param_serialize(
        self, method: str, resource_path: str, **_: Any
    ) -> tuple[str, str, dict[str, str], Any, list[Any]]:
        return method, f"https://kubernetes.default.svc{resource_path}", {}, None, []

    def call_api(self, *_: Any, **__: Any) -> DatedResponse:
        return DatedResponse(self.date)


def store_answering(date: str | None) -> KubeStore:
    return KubeStore(cast(client.ApiClient, DatedApi(date)))


def test_the_clock_is_the_api_servers_once_it_has_answered() -> None:
    ahead = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=10)
    store = store_answering(email.utils.format_datetime(ahead, usegmt=True))
    store.request("GET", "/api/v1/namespaces")
    # Date is to the second: the server's time is within that second.
    assert abs((store.now() - ahead).total_seconds()) < 2.0


def test_before_any_answer_or_without_a_date_the_clock_is_this_machines() -> None:
    for store in (store_answering(None), store_answering("not a date")):
        assert abs((store.now() - datetime.datetime.now(datetime.UTC)).total_seconds()) < 1.0
        store.request("GET", "/api/v1/namespaces")
        assert abs((store.now() - datetime.datetime.now(datetime.UTC)).total_seconds()) < 1.0


def test_readings_within_the_rounding_of_date_do_not_move_the_clock() -> None:
    """Date is to the second: readings half a second apart are the same clock, not a jump."""
    now = datetime.datetime.now(datetime.UTC)
    api = DatedApi(email.utils.format_datetime(now + datetime.timedelta(minutes=10), usegmt=True))
    store = KubeStore(cast(client.ApiClient, api))
    store.request("GET", "/api/v1/namespaces")
    first = store.now() - datetime.datetime.now(datetime.UTC)
    for shift in (-0.6, 0.4, -0.3):
        api.date = email.utils.format_datetime(now + datetime.timedelta(minutes=10, seconds=shift), usegmt=True)
        store.request("GET", "/api/v1/namespaces")
        assert abs((store.now() - datetime.datetime.now(datetime.UTC)) - first) < datetime.timedelta(seconds=0.1)

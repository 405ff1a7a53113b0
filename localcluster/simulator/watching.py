"""The objects of one kind, kept current by one list and then a watch, as an informer keeps them.

Listing every Service, workload and routing object each second cost the API server more than
everything else a test cluster does, and grew with every namespace a test left behind. A watch
costs nothing while nothing changes. The watch loop runs in a thread of its own; readers take a
copy of what it holds at that moment. When the API server is away, the last objects seen stay
(as a data plane keeps its last configuration) and the failure is reported; when it is back, the
kind is listed again.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

# The API server ends a watch after this long; it is started again from the last version seen.
WATCH_SECONDS = 300
CONNECT_TIMEOUT_SECONDS = 10.0

Key = tuple[str, str]


class Expired(Exception):
    """The API server no longer has the version to resume from (410 Gone): list again."""


def _key(item: Mapping[str, Any]) -> Key:
    metadata = item.get("metadata") or {}
    return str(metadata.get("namespace", "")), str(metadata.get("name", ""))


class WatchedKind:
    """``call(*args, **options)`` is a generated list function of the Kubernetes client (it lists,
    or watches with ``watch=True``); ``kind`` is written into every object kept."""

    def __init__(
        self,
        call: Callable[..., Any],
        args: tuple[str, ...],
        kind: str,
        stop: threading.Event,
        retry_seconds: float = 1.0,
        describe: Callable[[BaseException], str] = str,
    ) -> None:
        self._call, self._args, self._kind = call, args, kind
        self._stop, self._retry = stop, retry_seconds
        self._describe = describe
        self._lock = threading.Lock()
        self._objects: dict[Key, Mapping[str, Any]] = {}
        self.synced = threading.Event()
        self.failure: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{kind}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def objects(self) -> list[Mapping[str, Any]]:
        with self._lock:
            return list(self._objects.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                version = self._list()
                self.failure = None
                while not self._stop.is_set():
                    version = self._watch(version)
            except Expired:
                continue
            except ApiException as error:
                if error.status == 404:
                    # An API this cluster does not serve: nothing to route by (asked again later).
                    self._replace({})
                    self.synced.set()
                    self.failure = None
                else:
                    self.failure = f"{self._kind}: {self._describe(error)}"
            except Exception as error:  # the API server is away: keep what was seen, try again
                self.failure = f"{self._kind}: {self._describe(error)}"
            self._stop.wait(self._retry)

    def _list(self) -> str:
        response = self._call(*self._args, _preload_content=False, _request_timeout=(CONNECT_TIMEOUT_SECONDS, 60.0))
        body = json.loads(response.data)
        items = body.get("items") or []
        self._replace({_key(item): {**item, "kind": self._kind} for item in items if isinstance(item, Mapping)})
        self.synced.set()
        return str((body.get("metadata") or {}).get("resourceVersion", ""))

    def _watch(self, version: str) -> str:
        response = self._call(
            *self._args,
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS,
            _preload_content=False,
            _request_timeout=(CONNECT_TIMEOUT_SECONDS, WATCH_SECONDS + 30.0),
        )
        try:
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                if self._stop.is_set():
                    break
                event = json.loads(line)
                kind, item = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if item.get("code") == 410:
                        raise Expired
                    raise RuntimeError(item.get("message", "watch error"))
                version = str((item.get("metadata") or {}).get("resourceVersion", version))
                if kind == "BOOKMARK":
                    continue
                with self._lock:
                    if kind == "DELETED":
                        self._objects.pop(_key(item), None)
                    else:
                        self._objects[_key(item)] = {**item, "kind": self._kind}
        finally:
            response.release_conn()
        return version

    def _replace(self, objects: dict[Key, Mapping[str, Any]]) -> None:
        with self._lock:
            self._objects = objects

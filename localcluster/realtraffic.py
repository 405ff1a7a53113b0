"""Users of the real data plane: HTTP requests through Traefik, counted by who answered them.

A ``User`` is one client with its own cookie jar (session affinity routes it by a cookie it was
given); ``Load`` is many of them sending a steady rate from a thread, so that a release under
analysis sees real traffic, and keeps what every answer said. Counts are keyed by the version
that answered (the tag of the pod's image, from the body the backends write) and the status.
"""

from __future__ import annotations

import http.cookiejar
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import requests

# An answer that did not come from a pod (Traefik's own 404 or 503, a refused connection).
NO_POD = "-"
REQUEST_TIMEOUT = 5.0


@dataclass(frozen=True)
class Answer:
    version: str
    pod: str
    status: int
    set_cookie: str = ""


class User:
    """One client of ``url``, asking for ``host``, with its headers and the cookies it was given."""

    def __init__(
        self, url: str, host: str, headers: Mapping[str, str] | None = None, keep_cookies: bool = True
    ) -> None:
        self.url = url
        self.session = requests.Session()
        # A proxy configured for the shell never sees requests to the local proxy.
        self.session.trust_env = False
        if not keep_cookies:
            # A client that never comes back with what it was given (each request a new user).
            self.session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        self.session.headers.update({"Host": host, **(headers or {})})

    def get(self, path: str = "/") -> Answer:
        try:
            response = self.session.get(f"{self.url}{path}", timeout=REQUEST_TIMEOUT)
        except requests.RequestException:
            return Answer(NO_POD, NO_POD, 0)
        body: dict[str, str] = {}
        if response.headers.get("Content-Type", "").startswith("application/json"):
            try:
                body = response.json()
            except ValueError:
                body = {}
        return Answer(
            version=str(body.get("version", NO_POD)),
            pod=str(body.get("hostname", NO_POD)),
            status=response.status_code,
            set_cookie=response.headers.get("Set-Cookie", ""),
        )

    def close(self) -> None:
        self.session.close()


@dataclass
class Tally:
    """Answers per (version, status), in total and per user."""

    answers: Counter[tuple[str, int]] = field(default_factory=Counter)
    per_user: dict[int, Counter[tuple[str, int]]] = field(default_factory=dict)

    def add(self, user: int, answer: Answer) -> None:
        key = (answer.version, answer.status)
        self.answers[key] += 1
        self.per_user.setdefault(user, Counter())[key] += 1

    def versions(self) -> Counter[str]:
        counted: Counter[str] = Counter()
        for (version, _), count in self.answers.items():
            counted[version] += count
        return counted


class Load:
    """``users`` clients taking turns at ``rps`` requests a second until stopped; a bounded loop
    (``max_requests``) so that a test that forgets to stop it cannot run forever."""

    def __init__(
        self,
        url: str,
        host: str,
        rps: float = 20.0,
        users: int = 10,
        headers: Mapping[str, str] | None = None,
        max_requests: int = 100_000,
    ) -> None:
        self.users = [User(url, host, headers) for _ in range(users)]
        self.rps = rps
        self.max_requests = max_requests
        self._lock = threading.Lock()
        self._tally = Tally()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"load {host}", daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=REQUEST_TIMEOUT * 2)
        for user in self.users:
            user.close()

    def tally(self) -> Tally:
        """A copy of what was answered so far."""
        with self._lock:
            return Tally(Counter(self._tally.answers), {k: Counter(v) for k, v in self._tally.per_user.items()})

    def reset(self) -> Tally:
        """What was answered so far; counting starts again from nothing."""
        with self._lock:
            tally, self._tally = self._tally, Tally()
        return tally

    def _run(self) -> None:
        interval = 1.0 / self.rps
        next_at = time.monotonic()
        for sent in range(self.max_requests):
            if self._stop.is_set():
                return
            index = sent % len(self.users)
            answer = self.users[index].get()
            with self._lock:
                self._tally.add(index, answer)
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

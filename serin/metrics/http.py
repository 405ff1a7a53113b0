"""What every HTTP metrics backend shares: one retrying session per backend, and the mapping of
what can go wrong onto the engine's errors, the same for all of them.

* 401, 403: ``InvalidCredentials``, naming the Secret the credentials came from (never a value).
* another 4xx, or an answer that is not the JSON asked for: ``InvalidQuery`` (asking again gets the
  same answer: a failed check).
* unreachable, a timeout, 429 or a 5xx: ``MetricsUnavailable`` (the step holds, bounded).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests
from urllib3.util import Retry

from serin import egress
from serin.model import DEFAULT_METRIC_INTERVAL, parse_duration
from serin.ports import InvalidCredentials, InvalidQuery, MetricsUnavailable, ProviderConfig, SerinError

DEFAULT_TIMEOUT = 5.0
RETRIES = 2
# Backends whose queries cannot say their own time window are asked for the last ten metric
# intervals, as Flagger asks them; the interval is the metric's (Flagger's default when unset).
WINDOW_INTERVALS = 10
DEFAULT_INTERVAL_SECONDS = parse_duration(DEFAULT_METRIC_INTERVAL)


class Session(requests.Session):
    """A session whose ``verify = False`` holds whatever the environment says: requests otherwise
    lets ``REQUESTS_CA_BUNDLE`` (or ``CURL_CA_BUNDLE``) win over a session's own setting, and a
    template's ``insecureSkipVerify`` would be ignored wherever one is set."""

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if self.verify is False and verify is None:
            settings["verify"] = False
        return settings


def retrying_session(retries: int = RETRIES, backoff_factor: float = 0.2) -> requests.Session:
    """A session that retries on connection errors and on 502/503/504 from a proxy or a restarting server."""
    retry = Retry(
        total=retries,
        connect=retries,
        # A query that timed out is not sent again: the server is still busy with it, and repeating
        # it would multiply the wait of a tick that has other Canaries to look at.
        read=0,
        status=retries,
        status_forcelist=(502, 503, 504),
        # Queries are reads, whatever the method a backend wants them sent with.
        allowed_methods=frozenset({"GET", "POST"}),
        backoff_factor=backoff_factor,
        # Hand back the last 5xx instead of raising, so its body (the backend's error text) is reported.
        raise_on_status=False,
    )
    session = Session()
    adapter = egress.CheckedAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def configured_session(config: ProviderConfig) -> requests.Session:
    """A retrying session as a MetricTemplate asks: its TLS verification choice and its headers."""
    session = retrying_session()
    session.verify = not config.insecure_skip_verify
    for header, values in config.headers:
        session.headers[header] = ", ".join(values)
    return session


class HttpBackend:
    """One backend's address, session and error mapping; providers add their API on top."""

    def __init__(self, config: ProviderConfig, default_address: str = "", timeout: float = DEFAULT_TIMEOUT) -> None:
        self.config = config
        self.name = config.type
        self.address = (config.address or default_address).rstrip("/")
        self.timeout = timeout
        self.session = configured_session(config)

    @property
    def shown(self) -> str:
        """What messages name: the address without user info, which may hold a password."""
        return egress.shown(self.address)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.shown!r})"

    def close(self) -> None:
        self.session.close()

    def fetch(self, method: str, url: str, what: str, timeout: float | None = None, **kwargs: Any) -> egress.Answer:
        """The answer to one request, whole within the backend's timeout, or the engine's error
        saying what kept it from ``what`` (the query, in words a user recognises)."""
        seconds = self.timeout if timeout is None else timeout
        try:
            return egress.fetch(self.session, method, url, seconds, **kwargs)
        except egress.EgressError as error:
            raise unanswered(f"{self.name} at {self.shown}", what, error) from None

    def request_json(
        self,
        method: str,
        path: str,
        what: str,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """The JSON answer to one request, or the engine's error saying what went wrong with ``what``."""
        answer = self.fetch(
            method, f"{self.address}{path}", what, params=params, json=json_body, data=data, headers=headers
        )
        self.check(answer, what)
        try:
            return answer.json()
        except ValueError:
            raise InvalidQuery(f"{self.name} at {self.shown} answered {what} with {not_json(answer)}") from None

    def check(self, answer: egress.Answer, what: str) -> None:
        """Raise the engine's error for an answer that is not a success."""
        status = answer.status
        if answer.ok:
            return
        message = f"{self.name} at {self.shown} answered status {status} for {what}: {egress.excerpt(answer)}"
        if status in (401, 403):
            secret = f"Secret {self.config.secret_name}" if self.config.secret_name else "no secretRef"
            raise InvalidCredentials(
                f"{self.name} at {self.shown} refused the credentials ({status}; they come from {secret})"
            )
        if status == 429 or status >= 500:
            raise MetricsUnavailable(message)
        raise InvalidQuery(message)


def unanswered(where: str, what: str, error: egress.EgressError) -> SerinError:
    """The engine's error for a request that got no answer: a policy or size refusal is the same
    next time (a failed check); anything else may pass (the step holds)."""
    if isinstance(error, egress.NoAnswerInTime):
        return MetricsUnavailable(f"{where} did not answer {what} in time: {error}")
    if isinstance(error, egress.Unreachable):
        return MetricsUnavailable(f"{where} unreachable: {error}")
    return InvalidQuery(f"{where} cannot be asked {what}: {error}")


def not_json(answer: egress.Answer) -> str:
    kind = answer.content_type.split(";", 1)[0].strip() or "no content type"
    return f"{len(answer.body)} bytes of {kind}, not a JSON object"

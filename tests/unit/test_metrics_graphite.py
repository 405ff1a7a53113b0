"""The graphite provider against a real graphite-web.

graphite-web 1.1.10 and whisper 1.1.10 (PyPI, in requirements-dev.txt) run in this process: the
test writes whisper files into a temporary storage directory, then serves graphite-web's own WSGI
application (``graphite.wsgi``, Django) on 127.0.0.1, so ``/render?format=json`` answers, parses
``from``/``until`` and evaluates functions exactly as a Graphite server does. It needs no database
for rendering, and starts in well under a second.

graphite-web has no authentication of its own: deployments put it behind a proxy that asks for
basic auth. ``Gateway``, a WSGI middleware of the test's own in front of it, plays that proxy (401
without the right ``Authorization: Basic``), records what each request carried, and can be told to
fail (500) or to be slow, for the cases a healthy graphite-web cannot show.
"""

from __future__ import annotations

import base64
import importlib
import socketserver
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import pytest
import whisper  # type: ignore[import-untyped]

from serin.metrics.graphite import GraphiteProvider, build, render_params
from serin.ports import InvalidCredentials, InvalidQuery, MetricsUnavailable, NoValuesFound, ProviderConfig
from tests.unit.fake_store import FakeStore
from tests.unit.servers import serving

# graphite-web 1.1.10 calls pyparsing and logging methods that newer versions deprecate.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SECRET = "test/graphite"
USER = "serin"
PASSWORD = "right-password"
WRONG_PASSWORD = "wrong-password-123"


@pytest.fixture(scope="module")
def graphite_web(tmp_path_factory: pytest.TempPathFactory) -> WSGIApplication:
    """graphite-web's WSGI application over a whisper store holding the series the tests read."""
    storage = tmp_path_factory.mktemp("graphite")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAPHITE_STORAGE_DIR", str(storage))
        patch.setenv("DJANGO_SETTINGS_MODULE", "graphite.settings")
        (storage / "whisper").mkdir()
        (storage / "log" / "webapp").mkdir(parents=True)
        with warnings.catch_warnings():
            # No local_settings: graphite-web warns that its SECRET_KEY (unused for rendering) is a default.
            warnings.simplefilter("ignore")
            application: WSGIApplication = importlib.import_module("graphite.wsgi").application
    # Django's settings are read once per process: write where they point. No carbon-cache runs
    # here, so graphite-web is not to ask one for points it has not written yet.
    settings = importlib.import_module("django.conf").settings
    settings.CARBONLINK_HOSTS = []
    whisper_dir = Path(settings.WHISPER_DIR)
    now = int(time.time())
    write_series(whisper_dir, "app.podinfo.errors", [(now - 60, 1.5), (now - 30, 2.5), (now - 20, 4.25)])
    write_series(whisper_dir, "app.shop.a", [(now - 30, 1.0)])
    write_series(whisper_dir, "app.shop.b", [(now - 30, 2.0)])
    return application


def write_series(whisper_dir: Path, name: str, points: Iterable[tuple[int, float]]) -> None:
    path = whisper_dir.joinpath(*name.split(".")).with_suffix(".wsp")
    path.parent.mkdir(parents=True, exist_ok=True)
    whisper.create(str(path), [(10, 360)])  # ten-second points for an hour
    whisper.update_many(str(path), list(points))


@dataclass
class Received:
    path: str
    params: list[tuple[str, str]]
    authorization: str
    tenant: str


class Gateway:
    """A basic-auth proxy in front of graphite-web, which records requests and can fail on demand."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self.users: dict[str, str] = {}
        self.failure = ""
        self.delay = 0.0
        self.received: list[Received] = []
        self.lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        authorization = environ.get("HTTP_AUTHORIZATION", "")
        with self.lock:
            self.received.append(
                Received(
                    environ["PATH_INFO"],
                    parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True),
                    authorization,
                    environ.get("HTTP_X_SCOPE_ORGID", ""),
                )
            )
        if self.delay:
            # Slower than the client waits; by the time it answers nobody listens (graphite-web is
            # not asked, so that it does not run on after the test).
            time.sleep(self.delay)
            start_response("504 Gateway Timeout", [("Content-Type", "text/plain")])
            return [b"too late"]
        if self.users and not self.authorized(authorization):
            headers = [("Content-Type", "text/plain"), ("WWW-Authenticate", 'Basic realm="graphite"')]
            start_response("401 Unauthorized", headers)
            return [b"401 Authorization Required"]
        if self.failure:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [self.failure.encode()]
        return self.app(environ, start_response)

    def authorized(self, authorization: str) -> bool:
        if not authorization.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(authorization.removeprefix("Basic ")).decode().partition(":")
        return self.users.get(user) == password


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class GraphiteServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False


@pytest.fixture
def gateway(graphite_web: WSGIApplication) -> Iterator[tuple[Gateway, str]]:
    front = Gateway(graphite_web)
    server = make_server("127.0.0.1", 0, front, server_class=GraphiteServer, handler_class=QuietHandler)
    with serving(server):
        yield front, f"http://127.0.0.1:{server.server_address[1]}"


def config(
    address: str, secret: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None
) -> ProviderConfig:
    return ProviderConfig(
        type="graphite",
        address=address,
        headers=tuple((name, (value,)) for name, value in (headers or {}).items()),
        secret_name=SECRET if secret is not None else "",
        secret=tuple((secret or {}).items()),
    )


def provider(address: str, secret: Mapping[str, str] | None = None, timeout: float = 5.0) -> GraphiteProvider:
    built = build(config(address, secret), FakeStore())
    built.backend.timeout = timeout
    return built


def test_value_is_the_last_non_null_datapoint(gateway: tuple[Gateway, str]) -> None:
    front, url = gateway
    assert provider(url).query("target=app.podinfo.errors&from=-5min") == 4.25
    [received] = front.received
    assert received.path == "/render"
    assert received.params == [("target", "app.podinfo.errors"), ("from", "-5min"), ("format", "json")]
    assert received.authorization == ""


def test_a_query_over_lines_with_functions(gateway: tuple[Gateway, str]) -> None:
    # Flagger's documented shape: a multi-line target with functions, its window in from=.
    front, url = gateway
    query = "target=summarize(\n  sumSeries(app.podinfo.*),\n  '1h',\n  'max'\n)\n&\n  from=-10min&format=png"
    assert provider(url).query(query) == 4.25
    assert front.received[0].params == [
        ("target", "summarize( sumSeries(app.podinfo.*), '1h', 'max' )"),
        ("from", "-10min"),
        ("format", "json"),
    ]


def test_basic_auth_and_headers_are_sent(gateway: tuple[Gateway, str]) -> None:
    front, url = gateway
    front.users = {USER: PASSWORD}
    built = build(config(url, {"username": USER, "password": PASSWORD}, {"X-Scope-OrgID": "tenant-1"}), FakeStore())
    assert built.query("target=app.podinfo.errors&from=-5min") == 4.25
    [received] = front.received
    assert received.authorization == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert received.tenant == "tenant-1"


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("target=app.podinfo.missing&from=-5min", id="no-such-series"),
        pytest.param("target=app.podinfo.errors&from=-5min&until=-4min", id="only-nulls-in-window"),
        pytest.param("target=sumSeries(app.podinfo.errors&from=-5min", id="unparsable-target-answers-empty"),
    ],
)
def test_no_data(gateway: tuple[Gateway, str], query: str) -> None:
    _, url = gateway
    with pytest.raises(NoValuesFound) as caught:
        provider(url).query(query)
    assert str(caught.value) == f"no values found for query {query}"


def test_graphite_refusing_the_query_is_invalid(gateway: tuple[Gateway, str]) -> None:
    # Graphite's offsets are 1min, 1h...: a bare "m" is refused with 400. Its reason is an HTML
    # page, which is never quoted: only JSON error texts are.
    _, url = gateway
    query = "target=app.podinfo.errors&from=-1m"
    with pytest.raises(InvalidQuery) as caught:
        provider(url).query(query)
    assert str(caught.value) == (f"graphite at {url} answered status 400 for query {query}: 44 bytes of text/html")


def test_several_series_with_values_are_invalid(gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    query = "target=app.shop.*&from=-5min"
    with pytest.raises(InvalidQuery) as caught:
        provider(url).query(query)
    assert str(caught.value) == (
        f"query {query} returned 2 series with values (app.shop.a, app.shop.b), not one: aggregate them into one"
    )


def test_a_5xx_is_unavailable(gateway: tuple[Gateway, str]) -> None:
    front, url = gateway
    front.failure = "graphite-web: storage backend failed"
    query = "target=app.podinfo.errors&from=-5min"
    with pytest.raises(MetricsUnavailable) as caught:
        provider(url).query(query)
    assert str(caught.value) == (f"graphite at {url} answered status 500 for query {query}: 36 bytes of text/plain")


def test_a_timeout_is_unavailable(gateway: tuple[Gateway, str]) -> None:
    front, url = gateway
    front.delay = 1.0
    query = "target=app.podinfo.errors&from=-5min"
    with pytest.raises(MetricsUnavailable) as caught:
        provider(url, timeout=0.3).query(query)
    assert str(caught.value) == f"graphite at {url} did not answer query {query} in time: no answer within 0.3s"


def test_refused_credentials_name_the_secret_not_the_password(gateway: tuple[Gateway, str]) -> None:
    front, url = gateway
    front.users = {USER: PASSWORD}
    with pytest.raises(InvalidCredentials) as caught:
        provider(url, {"username": USER, "password": WRONG_PASSWORD}).query("target=app.podinfo.errors&from=-5min")
    assert str(caught.value) == (f"graphite at {url} refused the credentials (401; they come from Secret {SECRET})")
    assert WRONG_PASSWORD not in str(caught.value)
    assert WRONG_PASSWORD not in repr(provider(url, {"username": USER, "password": WRONG_PASSWORD}))


def test_a_secret_without_the_password_is_named() -> None:
    with pytest.raises(InvalidCredentials) as caught:
        build(config("http://graphite.monitoring", {"username": USER}), FakeStore())
    assert str(caught.value) == f"graphite needs password in its credentials: Secret {SECRET} has none"


def test_an_address_is_required() -> None:
    with pytest.raises(InvalidQuery) as caught:
        build(config(""), FakeStore())
    assert str(caught.value) == (
        "graphite needs spec.provider.address, the URL of its render API (such as http://graphite)"
    )


def test_a_query_without_target_is_invalid_before_asking(gateway: tuple[Gateway, str]) -> None:
    front, url = gateway
    graphite = provider(url)
    message = (
        "graphite query sumSeries(app.podinfo.*) has no target=: "
        "it must be a render query string such as target=<series>&from=-5min"
    )
    assert graphite.syntax_error("sumSeries(app.podinfo.*)") == message
    assert graphite.syntax_error("target=sumSeries(app.podinfo.*)&from=-5min") is None
    with pytest.raises(InvalidQuery) as caught:
        graphite.query("sumSeries(app.podinfo.*)")
    assert str(caught.value) == message
    assert front.received == []


def test_an_address_with_a_path_prefix(gateway: tuple[Gateway, str]) -> None:
    front, url = gateway
    with pytest.raises(InvalidQuery):
        provider(f"{url}/graphite/").query("target=app.podinfo.errors&from=-5min")
    assert front.received[0].path == "/graphite/render"


def test_render_params_keep_order_and_encoding() -> None:
    assert render_params("target=alias(a.b,%20'x%26y')&target=c.d&from=-1h&until=now") == [
        ("target", "alias(a.b, 'x&y')"),
        ("target", "c.d"),
        ("from", "-1h"),
        ("until", "now"),
        ("format", "json"),
    ]

"""/readyz: ready unless as many requests wait for a thread of this process's worker as it has
threads; the pool that counts them."""

from __future__ import annotations

import threading
import types
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from localcluster.testing import eventually
from serin import worker
from serin.worker import CountingPool, GuardedThreadWorker


@pytest.fixture
def blocked() -> Iterator[threading.Event]:
    """Set it to let the jobs that wait on it end."""
    release = threading.Event()
    yield release
    release.set()


def busy(pool: CountingPool, jobs: int, release: threading.Event) -> None:
    """Gives the pool ``jobs`` jobs that each hold a thread until ``release`` is set."""
    for _ in range(jobs):
        pool.submit(release.wait, 10)


def test_the_pool_counts_the_jobs_that_wait_for_a_thread(blocked: threading.Event) -> None:
    pool = CountingPool(2)
    try:
        assert (pool.threads, pool.waiting) == (2, 0)
        busy(pool, 2, blocked)
        eventually(lambda: pool.waiting == 0, timeout=5, what="each job given a thread")
        busy(pool, 3, blocked)
        eventually(lambda: pool.waiting == 3, timeout=5, what="three jobs waiting")
        assert pool.submit(lambda x: x * 2, 21) is not None
        eventually(lambda: pool.waiting == 4, timeout=5, what="four jobs waiting")
        blocked.set()
        eventually(lambda: pool.waiting == 0, timeout=5, what="every job run")
    finally:
        pool.shutdown(wait=True)


def test_a_job_gets_its_arguments_and_gives_its_result() -> None:
    with CountingPool(1) as pool:
        assert pool.submit(lambda x, *, y: x * y, 6, y=7).result(timeout=5) == 42


def test_the_worker_serves_with_the_pool_readyz_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "POOL", None)
    guarded = GuardedThreadWorker.__new__(GuardedThreadWorker)  # its own settings only
    guarded.cfg = types.SimpleNamespace(threads=3)
    pool = guarded.get_thread_pool()
    try:
        assert worker.POOL is pool and pool.threads == 3
    finally:
        pool.shutdown()


def test_ready_outside_gunicorn(app_client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "POOL", None)
    response = app_client.get("/readyz")
    assert (response.status_code, response.get_data(as_text=True)) == (200, "ok\n")


@pytest.mark.parametrize(
    ("threads", "jobs", "status", "text"),
    [
        pytest.param(2, 2, 200, "ok\n", id="every-thread-busy"),
        pytest.param(2, 3, 200, "ok\n", id="one-waiting"),
        pytest.param(2, 4, 503, "busy: 2 requests wait for one of 2 threads\n", id="a-pool-of-waiting"),
    ],
)
def test_not_ready_while_as_many_requests_wait_as_there_are_threads(
    app_client: FlaskClient,
    monkeypatch: pytest.MonkeyPatch,
    blocked: threading.Event,
    threads: int,
    jobs: int,
    status: int,
    text: str,
) -> None:
    pool = CountingPool(threads)
    monkeypatch.setattr(worker, "POOL", pool)
    try:
        busy(pool, jobs, blocked)
        eventually(lambda: pool.waiting == jobs - threads, timeout=5, what="the jobs started")
        response = app_client.get("/readyz")
        assert (response.status_code, response.get_data(as_text=True)) == (status, text)
        assert response.mimetype == "text/plain"
    finally:
        blocked.set()
        pool.shutdown(wait=True)

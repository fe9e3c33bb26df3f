"""The cast and the stage for mami's tests.

alice owns things; bob is another user who must never see them. The Forge
simulator is a real HTTP server on loopback, shared by the session and
reset for every test.
"""

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import AbstractUser
from django.db import connections

from chat import reply_runner
from simulators.chat_model import ChatModelSimulator
from simulators.forge import ForgeSimulator
from tests.helpers import PASSWORD, runworker_process, serving, stop_processes


@pytest.fixture(scope="session", autouse=True)
def _static_files_built() -> None:
    """Pages name their static files by hash, as served: the manifest must
    exist (built once, again only when a static file changed)."""
    from mami.static_build import collect_if_changed

    collect_if_changed()


@pytest.fixture(scope="session", autouse=True)
def _connections_closed_after_use() -> None:
    """This process's threads (request threads, reply writers, the
    after-commit lane) close their connections after each use, as before
    connections were kept: kept ones would still be open when the test
    database is dropped. The servers and workers the tests start keep
    theirs, as in production."""
    for alias in connections:
        connections.settings[alias]["CONN_MAX_AGE"] = 0


@pytest.fixture(scope="session", autouse=True)
def _test_database_dropped_at_the_end(django_db_setup, django_db_blocker) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Threads of this process that outlive their tests (reply writers,
    the after-commit lane, the request threads) may still hold a
    connection when the run ends, and PostgreSQL refuses to drop a
    database in use: those sessions are ended first."""
    yield
    if connections["default"].vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(autouse=True)
def _isolated_settings(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Tests drive the worker themselves; no in-process worker in the ASGI app.
    settings.MAMI_EMBEDDED_WORKER = False
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MAMI_SPOOL_DIR = tmp_path / "spool"
    settings.MAMI_PROGRESS_WRITE_INTERVAL = 0.2
    # Tests look at ETAs and notices right after changing what they follow
    # from; tests/test_positions.py checks the sharing itself.
    settings.MAMI_QUEUE_FACTS_SECONDS = 0
    settings.MAMI_WORKER_IDLE_SLEEP = 0.05
    # Queue refreshes go out at once, so tests see them in order.
    settings.MAMI_QUEUE_PUSH_DELAY = 0
    # Tests queue many pictures for one user; tests/test_limits.py sets the
    # fair-use limits it checks.
    settings.MAMI_MAX_UNFINISHED_PER_USER = 0
    settings.MAMI_MAX_PICTURES_PER_MINUTE = 0


@pytest.fixture(autouse=True)
def _default_language() -> Iterator[None]:
    """A request in Turkish leaves Turkish active in the test's thread
    (LocaleMiddleware activates it and nothing deactivates it): the next
    test starts in the default language again."""
    yield
    from django.conf import settings
    from django.utils import translation

    translation.activate(settings.LANGUAGE_CODE)


@pytest.fixture(autouse=True)
def _close_async_threads_connections() -> Iterator[None]:
    """Async tests run ORM calls on asgiref's shared thread-sensitive
    executor; close that thread's connection after each test, or PostgreSQL
    refuses to drop the test database at the end of the run."""
    yield
    from asgiref.sync import SyncToAsync

    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)


@pytest.fixture(autouse=True)
def _fresh_channel_layer() -> Iterator[None]:
    """Each async test runs on an event loop of its own, and channels_redis
    binds a layer's receive locks to the first loop that used them: a layer
    shared across tests stalled a socket's receive now and then ("bound to
    a different event loop"). Each test gets its own layer, as each process
    (one loop) has one in production, and its own view of the layer's
    health: a send cut short by the previous test's loop closing counted
    as an outage, and the next test's first pushes were dropped as during
    one."""
    from channels.layers import channel_layers

    from mami import push

    push.layer_health = push.LayerHealth()
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def _database_found_reachable() -> None:
    """What this process knows of database outages starts afresh with each
    test: one test's outage (it has no heartbeat to end it) must not hold
    the next test's worker."""
    from mami.db_outage import database

    database.__init__()  # type: ignore[misc]


@pytest.fixture(autouse=True)
def _settle_after_commit_lane() -> Iterator[None]:
    """What a test committed is pushed on the after-commit lane: let it run
    before the database goes, then close the lane's connections (for the
    same reason as above)."""
    yield
    from imagejobs import aftercommit

    aftercommit.lane.resume_all()
    assert aftercommit.lane.close_connections(), "the after-commit lane is stuck"


@pytest.fixture
def alice(django_user_model) -> AbstractUser:  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_user("alice", password=PASSWORD)


@pytest.fixture
def bob(django_user_model) -> AbstractUser:  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_user("bob", password=PASSWORD)


@pytest.fixture(scope="session")
def _simulator() -> Iterator[ForgeSimulator]:
    yield from serving(ForgeSimulator(seconds_per_step=0.01))


@pytest.fixture
def forge(_simulator: ForgeSimulator) -> Iterator[ForgeSimulator]:
    """The simulator, fresh: fast steps, no faults, zeroed counters."""
    _simulator.reset()
    _simulator.seconds_per_step = 0.01
    yield _simulator
    _simulator.reset()


@pytest.fixture(scope="session")
def _chat_simulator() -> Iterator[ChatModelSimulator]:
    yield from serving(ChatModelSimulator(tokens_per_second=40))


@pytest.fixture
def chat_sim(_chat_simulator: ChatModelSimulator, settings) -> Iterator[ChatModelSimulator]:  # type: ignore[no-untyped-def]
    """The chat-model simulator, fresh and connected: mami answers with it."""
    _chat_simulator.reset()
    settings.CHAT_MODEL_URL = _chat_simulator.url
    settings.CHAT_MODEL = "mami-chat-sim"
    settings.CHAT_REPLY_SAVE_INTERVAL = 0.2
    yield _chat_simulator
    reply_runner.wait_idle()
    _chat_simulator.reset()


@pytest.fixture
def spawn_worker(forge, settings) -> Iterator[Callable[..., subprocess.Popen]]:  # type: ignore[no-untyped-def]
    """Start `manage.py runworker` on the test database, with short
    heartbeat, sweep and liveness settings; killed at the end of the test."""
    processes: list[subprocess.Popen] = []

    def spawn(worker_id: str, *options: str, forge_url: str | None = None) -> subprocess.Popen:
        process = runworker_process(
            worker_id,
            forge_url or forge.url,
            *options,
            media_root=settings.MEDIA_ROOT,
            stderr=subprocess.PIPE,
        )
        processes.append(process)
        return process

    yield spawn
    stop_processes(*processes, timeout=10)

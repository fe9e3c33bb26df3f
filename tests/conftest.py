"""The cast and the stage for mami's tests.

alice owns things; bob is another user who must never see them. The Forge
simulator is a real HTTP server on loopback, shared by the session and
reset for every test.
"""

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from django.contrib.auth.models import AbstractUser
from django.db import connection, connections

from chat.intents import ImageRequest
from chat.models import Conversation
from chat.services import post_message
from imagejobs.models import ImageJob
from imagejobs.simulator import ForgeSimulator

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _isolated_settings(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Tests drive the worker themselves; no in-process worker in the ASGI app.
    settings.MAMI_EMBEDDED_WORKER = False
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MAMI_PROGRESS_WRITE_INTERVAL = 0.2
    settings.MAMI_WORKER_IDLE_SLEEP = 0.05
    # Queue refreshes go out at once, so tests see them in order.
    settings.MAMI_QUEUE_PUSH_DELAY = 0


@pytest.fixture(autouse=True)
def _close_async_threads_connections() -> Iterator[None]:
    """Async tests run ORM calls on asgiref's shared thread-sensitive
    executor; close that thread's connection after each test, or PostgreSQL
    refuses to drop the test database at the end of the run."""
    yield
    from asgiref.sync import SyncToAsync

    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)


@pytest.fixture
def alice(django_user_model) -> AbstractUser:  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_user("alice", password=PASSWORD)


@pytest.fixture
def bob(django_user_model) -> AbstractUser:  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_user("bob", password=PASSWORD)


@pytest.fixture(scope="session")
def _simulator() -> Iterator[ForgeSimulator]:
    sim = ForgeSimulator(seconds_per_step=0.01).start()
    yield sim
    sim.stop()


@pytest.fixture
def forge(_simulator: ForgeSimulator) -> Iterator[ForgeSimulator]:
    """The simulator, fresh: fast steps, no faults, zeroed counters."""
    _simulator.reset()
    _simulator.seconds_per_step = 0.01
    yield _simulator
    _simulator.reset()


def sim_control(sim: ForgeSimulator, **body: object) -> dict[str, object]:
    """Set the simulator's knobs over HTTP, as a test on another box would."""
    response = httpx.post(f"{sim.url}/_sim", json=body, timeout=5)
    response.raise_for_status()
    return response.json()


def make_conversation(owner: AbstractUser) -> Conversation:
    return Conversation.objects.create(owner=owner, title="test")


def request_picture(conversation: Conversation, prompt: str, **parameters: object) -> ImageJob:
    """What posting `/image <prompt>` does, minus the HTTP."""
    _question, answer = post_message(conversation, f"/image {prompt}", ImageRequest(prompt))
    job = ImageJob.objects.get(message=answer)
    if parameters:
        # Test-only shortcut for parameters the chat UI doesn't expose yet.
        ImageJob.objects.filter(pk=job.pk).update(**parameters)
        job.refresh_from_db()
    return job


def database_url() -> str:
    """DATABASE_URL of the database this test runs on, for child processes."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def closing(function: Callable[[], object]) -> Callable[[], None]:
    """Run `function` in a test thread, then close that thread's database
    connection (PostgreSQL refuses to drop a test database still in use)."""

    def run() -> None:
        try:
            function()
        finally:
            connections.close_all()

    return run


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll `condition` until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout:g}s")


async def open_socket(client, user, conversation_id, **headers: bytes):  # type: ignore[no-untyped-def]
    """A conversation socket as `user`'s browser opens it (session cookie, Origin)."""
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator

    from mami.asgi import application

    await database_sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    extra = [(name.encode(), value) for name, value in headers.items()]
    socket = WebsocketCommunicator(
        application,
        f"/ws/conversations/{conversation_id}/",
        headers=[(b"origin", b"http://localhost"), (b"cookie", cookie), *extra],
    )
    connected, _ = await socket.connect()
    assert connected
    return socket

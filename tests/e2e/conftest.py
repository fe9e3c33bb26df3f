"""A real Daphne server in a spawned child process, running the embedded
default (in-process worker, Forge simulator, chat-model simulator), and
Debian's Chromium.

Run in its own pytest invocation: once Playwright starts, the main thread
has a running event loop for the rest of the session.
"""

import multiprocessing
import os
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from channels.testing.live import make_application, set_database_connection
from daphne.testing import DaphneProcess

# Playwright's sync API keeps an event loop running in this thread; the
# test's own ORM calls are safe (no other coroutine touches the database).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "1")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

pytestmark = pytest.mark.e2e


def _server_setup() -> None:
    # The server keeps Django's async-safety check; only the test relaxes it.
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    set_database_connection()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):  # type: ignore[no-untyped-def]
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(autouse=True)
def _isolated_settings() -> None:
    """The live server is configured through its environment instead."""


class LiveServer:
    """Daphne in a child process; `stop()` and `start()` again keep the
    port, as a restarted server does for the pages that had it open."""

    def __init__(self) -> None:
        self.port = 0
        self.process: DaphneProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        process = DaphneProcess(
            "127.0.0.1",
            # Static files as served: WhiteNoise, from the built files.
            partial(make_application, static_wrapper=None),
            setup=_server_setup,
            port=self.port or None,
        )
        process.start()
        if not process.ready.wait(30):
            raise RuntimeError("Daphne did not start: " + repr(process.errors.get(timeout=1)))
        self.port = process.port.value
        self.process = process

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.join(10)
            self.process = None


@pytest.fixture(scope="session")
def mami_server(
    django_db_setup, django_db_blocker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    # spawn: a forked child would inherit this process's threads and loops.
    multiprocessing.set_start_method("spawn", force=True)
    os.environ.update(
        {
            "MAMI_EMBEDDED_WORKER": "1",
            "FORGE_URL": "",
            "MAMI_SIMULATOR_SECONDS_PER_STEP": "0.15",
            "MAMI_PROGRESS_WRITE_INTERVAL": "0.5",
            # The whole product: the chat model's simulator answers too.
            "CHAT_MODEL_URL": "sim",
            "MEDIA_ROOT": str(tmp_path_factory.mktemp("media")),
        }
    )
    server = LiveServer()
    with django_db_blocker.unblock():
        server.start()
        yield server
        server.stop()


@pytest.fixture(scope="session", autouse=True)
def _flush_waits_for_the_server(mami_server: LiveServer) -> Iterator[None]:
    """Each test ends with TRUNCATE of every table while the live server's
    threads (worker, reply keeper) still run. On PostgreSQL their short
    transactions can take locks in another order than TRUNCATE does, and
    PostgreSQL ends the deadlock by failing the flush; it rolled back, so
    trying it again is safe."""
    from django.db import OperationalError, connection

    ops = connection.ops
    flush = ops.execute_sql_flush

    def patient_flush(sql_list: list[str]) -> None:
        for attempt in range(10):
            try:
                return flush(sql_list)
            except OperationalError as error:
                if "deadlock" not in str(error) or attempt == 9:
                    raise
                time.sleep(0.2)

    ops.execute_sql_flush = patient_flush
    yield
    ops.execute_sql_flush = flush


@pytest.fixture(scope="session")
def live_server_url(mami_server: LiveServer) -> str:
    return mami_server.url


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Path:
    folder = Path(os.environ.get("MAMI_SCREENSHOTS", "/tmp/mami-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(autouse=True)
def _no_csp_violations(page) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Every browser test also checks the Content-Security-Policy: Chromium
    reports each violation on the console, and none may appear."""
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield
    assert violations == [], "\n".join(violations)

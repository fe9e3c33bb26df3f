"""A database another process keeps locked for seconds (a backup, `sqlite3`
open in a shell, a `LOCK TABLE` on PostgreSQL) delays the worker's work and
fails none of it: on SQLite a write that waits past its timeout counts as
the database being away, and the queue holds until the lock is gone."""

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from django.db import connection, connections

from imagejobs.models import ImageJob, Status
from tests.helpers import (
    make_conversation,
    request_picture,
    runworker_process,
    stop_processes,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)

HELD_SECONDS = 4


def _hold_the_lock(ready: threading.Event) -> None:
    """Take the database's write lock from another connection, hold it."""
    if connection.vendor == "sqlite":
        holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        ready.set()
        time.sleep(HELD_SECONDS)
        holder.execute("ROLLBACK")
        holder.close()
        return
    database = connections["default"]
    try:
        with database.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("LOCK TABLE imagejobs_imagejob IN ACCESS EXCLUSIVE MODE")
            ready.set()
            time.sleep(HELD_SECONDS)
            cursor.execute("ROLLBACK")
    finally:
        database.close()


def test_a_database_locked_for_seconds_delays_the_queue_and_fails_nothing(
    alice, forge, settings, tmp_path: Path
):
    forge.seconds_per_step = 0.05
    conversation = make_conversation(alice)
    # A second each: most are still waiting when the lock is taken.
    jobs = [request_picture(conversation, f"crow {n}", steps=20) for n in range(8)]
    log = (tmp_path / "worker.log").open("ab")
    worker = runworker_process(
        "gpu-locked",
        forge.url,
        media_root=settings.MEDIA_ROOT,
        stderr=log,
        MAMI_SQLITE_TIMEOUT="1",
        FORGE_PROGRESS_INTERVAL="0.05",
    )
    try:
        wait_for(lambda: ImageJob.objects.filter(status=Status.COMPLETE).exists(), timeout=30)
        ready = threading.Event()
        holder = threading.Thread(target=_hold_the_lock, args=(ready,))
        holder.start()
        assert ready.wait(10)
        holder.join()
        wait_for(
            lambda: (
                list(ImageJob.objects.values_list("status", flat=True).distinct())
                == [Status.COMPLETE]
            ),
            timeout=60,
        )
    finally:
        stop_processes(worker)
    assert forge.stats.completed == len(jobs)
    text = (tmp_path / "worker.log").read_text()
    assert "Traceback" not in text, text
    if connection.vendor == "sqlite":
        # Writes waited past their timeout: held as an outage, not failed.
        assert text.count("database unreachable") >= 1, text
        assert "database is back" in text, text

"""Workers' own rows: one live process per worker id."""

import os
import subprocess
import time

import pytest
from django.db.models import F

from imagejobs import workers
from imagejobs.models import WorkerState


def test_a_running_worker_id_cannot_be_taken_twice(db, settings):
    workers.register("gpu-1", "http://127.0.0.1:7860")
    # Same id from another host that beat a moment ago: refused.
    WorkerState.objects.filter(pk="gpu-1").update(hostname="elsewhere")
    with pytest.raises(workers.WorkerIdInUse, match="in use by pid"):
        workers.register("gpu-1", "http://127.0.0.1:7860")


def _registered_as(process: subprocess.Popen, worker_id: str) -> None:
    """Make `worker_id`'s row say it belongs to `process`."""
    _state, started = workers.process_stat(process.pid)
    WorkerState.objects.filter(pk=worker_id).update(pid=process.pid, process_started=started)


def test_a_killed_worker_not_yet_reaped_frees_its_id_at_once(db):
    """A restarter may start the new process while the old one is still a
    zombie: the id is free, although the old row beat a moment ago."""
    workers.register("gpu-1", "http://127.0.0.1:7860")
    old = subprocess.Popen(["sleep", "30"])
    try:
        _registered_as(old, "gpu-1")
        with pytest.raises(workers.WorkerIdInUse):
            workers.register("gpu-1", "http://127.0.0.1:7860")
        old.kill()
        time.sleep(0.2)
        with open(f"/proc/{old.pid}/stat") as stat:
            assert ") Z " in stat.read(), "dead, not reaped: a zombie"
        state = workers.register("gpu-1", "http://127.0.0.1:7860")
        assert state.pid == os.getpid()
    finally:
        old.kill()
        old.wait()


def test_a_pid_reused_by_another_process_or_thread_is_not_the_old_worker(db):
    workers.register("gpu-1", "http://127.0.0.1:7860")
    newer = subprocess.Popen(["sleep", "30"])
    try:
        _registered_as(newer, "gpu-1")
        assert "gpu-1" in workers.live_worker_ids()
        # The row names a process that started at another time: whoever has
        # that pid now (a process, or a thread: same id space) is not it.
        WorkerState.objects.filter(pk="gpu-1").update(process_started=F("process_started") - 1)
        assert "gpu-1" not in workers.live_worker_ids()
        workers.register("gpu-1", "http://127.0.0.1:7860")
    finally:
        newer.kill()
        newer.wait()

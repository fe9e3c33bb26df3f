"""Workers' own rows: who is alive, on which Forge, with which circuit."""

import os
import socket
import uuid
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from .forge import ForgeCheckpoints
from .models import Circuit, WorkerState


class WorkerIdInUse(RuntimeError):
    pass


def default_worker_id(forge_url: str) -> str:
    """Stable across restarts: one worker per GPU, one GPU per Forge."""
    forge = urlsplit(forge_url)
    return f"{socket.gethostname()}/{forge.hostname}:{forge.port or 80}"


def _pid_alive(pid: int, *, started: int | None = None) -> bool:
    """Whether the process that registered is still running on this host.

    A zombie (killed, not yet reaped by its parent: a restarter may start
    the new process before that) is gone. So is a process whose start time
    differs from the one registered (`started`, clock ticks since boot):
    the pid was reused, by another process or by a thread (threads take
    ids from the same space, and a busy host wraps around it quickly).
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    stat = process_stat(pid)
    if stat is None:
        return True  # no /proc to ask (not Linux): trust the signal
    state, ticks = stat
    if state in {"Z", "X"}:
        return False
    return started is None or ticks == started


def process_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of a process or
    thread, from /proc: with the pid, the start time names one process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            # The command name may hold spaces and parentheses: split after it.
            fields = stat.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _silent_since(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.MAMI_WORKER_DEAD_AFTER_SECONDS)


def live_worker_ids(now: datetime | None = None) -> set[str]:
    """Workers that beat recently and, when on this host, still run."""
    return {worker.id for worker in live_workers(now)}


def not_live_among(worker_ids: set[str], now: datetime | None = None) -> set[str]:
    """Those of `worker_ids` not live. A sweep asks again, row by row,
    before acting on the live ids it read earlier: a worker may have
    registered (and claimed) since."""
    return worker_ids - {worker.id for worker in live_workers(now, only=worker_ids)}


def live_workers(now: datetime | None = None, *, only: set[str] | None = None) -> list[WorkerState]:
    now = now or timezone.now()
    rows = WorkerState.objects.filter(stopped_at__isnull=True, last_seen__gte=_silent_since(now))
    if only is not None:
        rows = rows.filter(pk__in=only)
    hostname = socket.gethostname()
    return [
        row
        for row in rows
        if row.hostname != hostname or _pid_alive(row.pid, started=row.process_started)
    ]


def register(worker_id: str, forge_url: str) -> WorkerState:
    """Claim `worker_id` for this process.

    A previous process with the same id on this host that is gone (killed,
    crashed) is taken over at once; one still running, or one on another
    host that beat recently, makes this refuse.
    """
    now = timezone.now()
    hostname, pid = socket.gethostname(), os.getpid()
    existing = WorkerState.objects.filter(pk=worker_id).first()
    if (
        existing is not None
        and existing.stopped_at is None
        and existing.last_seen >= _silent_since(now)
        and not (existing.hostname == hostname and existing.pid == pid)
        and (
            existing.hostname != hostname
            or _pid_alive(existing.pid, started=existing.process_started)
        )
    ):
        raise WorkerIdInUse(
            f"Worker id {worker_id!r} is in use by pid {existing.pid} on {existing.hostname} "
            f"(last seen {existing.last_seen:%H:%M:%S}); give this worker another --worker-id."
        )
    return _write_row(worker_id, forge_url, started_at=now)


def _own_start() -> int | None:
    stat = process_stat(os.getpid())
    return stat[1] if stat else None


def _write_row(worker_id: str, forge_url: str, *, started_at: datetime) -> WorkerState:
    state, _created = WorkerState.objects.update_or_create(
        pk=worker_id,
        defaults={
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "process_started": _own_start(),
            "forge_url": forge_url,
            "current_job": None,
            "started_at": started_at,
            "last_seen": timezone.now(),
            "stopped_at": None,
            "lost_at": None,
            "circuit": Circuit.CLOSED,
            "circuit_open_until": None,
            "consecutive_failures": 0,
        },
    )
    return state


def beat(worker_id: str, forge_url: str, *, channel_layer_failures: int = 0) -> bool:
    """Say this worker is alive; put its row back if someone deleted it
    (True then: what the row recorded, its checkpoints, must be again)."""
    alive = {"last_seen": timezone.now(), "channel_layer_failures": channel_layer_failures}
    if WorkerState.objects.filter(pk=worker_id).update(**alive):
        return False
    _write_row(worker_id, forge_url, started_at=timezone.now())
    return True


def set_current_job(worker_id: str, job_id: uuid.UUID | None) -> None:
    WorkerState.objects.filter(pk=worker_id).update(current_job_id=job_id, last_seen=timezone.now())


def save_circuit(
    worker_id: str, state: Circuit, failures: int, open_until: datetime | None
) -> None:
    WorkerState.objects.filter(pk=worker_id).update(
        circuit=state, consecutive_failures=failures, circuit_open_until=open_until
    )


def unregister(worker_id: str) -> None:
    WorkerState.objects.filter(Q(pk=worker_id), Q(pid=os.getpid())).update(
        stopped_at=timezone.now(), current_job=None
    )


def record_checkpoints(worker_id: str, found: ForgeCheckpoints) -> None:
    """What this worker's Forge offers, for the model picker and the
    scheduler (`imagejobs.checkpoints`)."""
    WorkerState.objects.filter(pk=worker_id).update(
        checkpoints=[
            {"title": m.title, "model_name": m.model_name, "hash": m.hash} for m in found.models
        ],
        loaded_checkpoint=found.current,
        checkpoints_read_at=timezone.now(),
    )


def record_loaded(worker_id: str, model: str, switch_seconds: float | None) -> None:
    """The checkpoint this worker's Forge has loaded since its last picture,
    and what a switch costs there as learned so far."""
    WorkerState.objects.filter(pk=worker_id).update(
        loaded_checkpoint=model, switch_seconds=switch_seconds
    )

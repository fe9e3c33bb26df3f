"""The state machine's edges, and what every status change brings with it
(`after_edge`): the one place the transitions (`imagejobs.transitions`)
and the claim (`.claim`) share."""

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q

from .. import broadcast, wakeup
from ..fair_order import rerank_on_commit
from ..models import JobPreview, JobTransition, Status


@dataclass(frozen=True)
class Move:
    """An edge of the state machine: from any of `sources` to `to`."""

    sources: tuple[Status, ...]
    to: Status


# The state machine. Terminal states (complete, error, canceled) are the
# source of no move. A move to the same state changes fields staff should
# see in the log (a cancel request, another attempt, a new place in line).
CLAIM = Move((Status.QUEUED,), Status.PROCESSING)
COMPLETE = Move((Status.PROCESSING,), Status.COMPLETE)
FAIL = Move((Status.QUEUED, Status.PROCESSING), Status.ERROR)
NOTE_PROCESSING = Move((Status.PROCESSING,), Status.PROCESSING)
REQUEUE = Move((Status.PROCESSING,), Status.QUEUED)
REORDER = Move((Status.QUEUED,), Status.QUEUED)


def held_by(worker_id: str | None) -> Q:
    """A worker may only change a job it still holds (after a recovery it
    may belong to another worker); None: anyone may."""
    return Q(worker_id=worker_id) if worker_id is not None else Q()


def new_attempt(now: datetime) -> dict[str, Any]:
    """A Forge call starts: no progress yet, and alive as of now."""
    return {"progress": 0, "eta_seconds": None, "heartbeat_at": now}


def ended(now: datetime) -> dict[str, Any]:
    return {"eta_seconds": None, "finished_at": now}


def after_edge(
    job_ids: Sequence[uuid.UUID],
    owner_ids: Iterable[int],
    before: str,
    after: str,
    *,
    at: datetime,
    reason: str,
    actor: str = "",
    code: str = "",
    claim: bool = False,
) -> None:
    """What every status change brings with it, registered inside its
    transaction: the log rows, the owners' fair-order keys (a job leaving
    or moving within the queue; a new job takes its keys as it is made),
    the idle workers woken (a job entering the queue), the live preview
    dropped (a run that ends), and the cards pushed after the commit.
    `claim`: a worker's claim, which wrote its log row in its own statement
    and ranks its owner off the GPU's path."""
    if before == Status.QUEUED or (before and after == Status.QUEUED):
        rerank_on_commit(owner_ids, off_path=claim)
    if after == Status.QUEUED and before != Status.QUEUED:
        wakeup.notify_on_commit()
    if before == Status.PROCESSING and after != Status.PROCESSING:
        # A preview is of one run: a finished, failed or requeued job has none.
        JobPreview.objects.filter(job_id__in=job_ids).delete()
    if not claim:
        JobTransition.objects.bulk_create(
            JobTransition(
                job_id=job_id,
                from_status=before,
                to_status=after,
                at=at,
                reason=reason[:200],
                worker_id=actor,
                code=code,
            )
            for job_id in job_ids
        )
    if len(job_ids) == 1:
        broadcast.job_changed_on_commit(job_ids[0])
    else:
        broadcast.jobs_changed_on_commit(list(job_ids))

"""What users and staff may do to a job.

Each `check_*` function is the one home of an action: it fetches the job
with an access check and a row lock, asks the job's own rule
(`job.can_cancel`, …) and then calls the `do_*` transition. Views, the JSON
API and the admin call these; the worker calls the transitions directly.
Retry and Regenerate make a new assistant message, so they live in
`chat.actions`.
"""

import uuid

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404
from django.utils.translation import gettext

from .access import access_job, jobs_for
from .errors import ErrorCode
from .models import ImageJob, Status
from .transitions import (
    do_cancel,
    do_cancel_queued,
    do_fail,
    do_move_to_head,
    do_request_cancel,
)


class JobActionError(ValueError):
    """The action doesn't apply to the job as it is now; the message says why."""


def _staff_job(user: User, job_id: uuid.UUID) -> ImageJob:
    if not user.is_staff:
        raise Http404("No such image job.")
    return access_job(user, job_id, lock=True, as_staff=True)


@transaction.atomic
def check_cancel(
    user: User, job_id: uuid.UUID, *, by: str = "user", as_staff: bool = False
) -> ImageJob:
    """Cancel a queued job at once; ask the worker to interrupt Forge and
    cancel a processing one. Asking twice is harmless. Returns the job as
    it is now; raises Http404 or JobActionError."""
    job = access_job(user, job_id, lock=True, as_staff=as_staff)
    if job.status == Status.PROCESSING and job.cancel_requested_at is not None:
        return job
    if not job.can_cancel:
        raise JobActionError(gettext("This picture is already finished, so it can't be canceled."))
    if job.status == Status.QUEUED:
        do_cancel(job.id, reason=f"canceled by {by}", allowed_from=[Status.QUEUED])
    else:
        do_request_cancel(
            job.id, reason="cancel requested" if by == "user" else f"cancel requested by {by}"
        )
    job.refresh_from_db()
    return job


def check_cancel_all_waiting(
    user: User, jobs: QuerySet[ImageJob], *, by: str = "user", as_staff: bool = False
) -> int:
    """Cancel every waiting job among `jobs` that `user` may cancel (their
    own; any for staff in the admin) in one statement. Jobs being drawn are
    left alone. Returns how many were canceled."""
    mine = jobs & jobs_for(user, as_staff=as_staff)
    return do_cancel_queued(mine, reason=f"canceled by {by} (cancel all)")


@transaction.atomic
def check_move_to_head(user: User, job_id: uuid.UUID) -> ImageJob:
    """Staff: put a waiting job before every other."""
    job = _staff_job(user, job_id)
    if not job.can_move_to_head:
        raise JobActionError(
            gettext("Only a waiting picture can be moved to the head of the line.")
        )
    do_move_to_head(job.id, reason=f"moved to the head by staff ({user})")
    return job


@transaction.atomic
def check_mark_error(user: User, job_id: uuid.UUID) -> ImageJob:
    """Staff: end an unfinished job as failed ("stopped by an administrator")."""
    job = _staff_job(user, job_id)
    if not job.can_mark_error:
        raise JobActionError(gettext("This picture is already finished."))
    do_fail(
        job.id,
        code=ErrorCode.STOPPED_BY_STAFF,
        detail=f"marked as failed by staff ({user})",
    )
    return job

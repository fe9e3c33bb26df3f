"""Who may see which job."""

import uuid

from django.contrib.auth.base_user import AbstractBaseUser
from django.http import Http404

from .models import ImageJob


def access_job(
    user: AbstractBaseUser, job_id: uuid.UUID, *, lock: bool = False, as_staff: bool = False
) -> ImageJob:
    """The user's own job, or 404 (never 403: others' ids stay secret).

    `as_staff`: any job, for staff only (the admin, which logs who acted);
    the pages and the API act only for a job's owner, staff included.

    `lock`: hold the row (SELECT … FOR UPDATE) until the caller's
    transaction ends, so a decision taken on the job stays true while it is
    carried out. Call inside `transaction.atomic()`.
    """
    jobs = ImageJob.objects.select_related("message")
    if not (as_staff and getattr(user, "is_staff", False)):
        jobs = jobs.filter(owner_id=user.pk)
    if lock:
        jobs = jobs.select_for_update(of=("self",))
    job = jobs.filter(pk=job_id).first()
    if job is None:
        raise Http404("No such image job.")
    return job

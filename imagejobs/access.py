"""Who may see which job."""

import uuid

from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import Http404

from .models import ImageJob


def jobs_for(user: User, *, as_staff: bool = False) -> QuerySet[ImageJob]:
    """The jobs `user` may see and act on: their own; with `as_staff`, any
    job if they are staff (the admin, which logs who acted). The pages and
    the API act only for a job's owner, staff included."""
    if as_staff and user.is_staff:
        return ImageJob.objects.all()
    return ImageJob.objects.filter(owner_id=user.pk)


def access_job(
    user: User, job_id: uuid.UUID, *, lock: bool = False, as_staff: bool = False
) -> ImageJob:
    """The user's own job, or 404 (never 403: others' ids stay secret).

    `as_staff`: as `jobs_for` takes it.

    `lock`: hold the row (SELECT … FOR UPDATE) until the caller's
    transaction ends, so a decision taken on the job stays true while it is
    carried out. Call inside `transaction.atomic()`.
    """
    jobs = jobs_for(user, as_staff=as_staff).select_related("message")
    if lock:
        jobs = jobs.select_for_update(of=("self",))
    job = jobs.filter(pk=job_id).first()
    if job is None:
        raise Http404("No such image job.")
    return job

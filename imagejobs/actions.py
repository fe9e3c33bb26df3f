"""What users and staff may do to a job: checks, then the transition."""

import uuid

from django.contrib.auth.base_user import AbstractBaseUser
from django.utils.translation import gettext

from .access import access_job
from .models import ImageJob, Status
from .transitions import do_cancel, do_request_cancel


class JobActionError(ValueError):
    """The action doesn't apply to the job as it is now; the message says why."""


def check_cancel(user: AbstractBaseUser, job_id: uuid.UUID) -> ImageJob:
    """Cancel a queued job at once; ask the worker to interrupt Forge and
    cancel a processing one. Raises Http404 or JobActionError."""
    job = access_job(user, job_id)
    if job.status == Status.QUEUED and do_cancel(job.id):
        return access_job(user, job_id)
    if job.status == Status.PROCESSING:
        do_request_cancel(job.id)
        return access_job(user, job_id)
    job.refresh_from_db()
    if job.status in (Status.QUEUED, Status.PROCESSING):
        # It moved between our read and our write; the user can try again.
        return check_cancel(user, job_id)
    raise JobActionError(gettext("This picture is already finished, so it can't be canceled."))


def retry_parameters(job: ImageJob, *, new_seed: bool) -> dict[str, object]:
    """The generation parameters of `job`, for a retry (same seed) or a
    regeneration (a new random seed)."""
    parameters = {"prompt": job.prompt, **job.generation_parameters()}
    if new_seed:
        parameters["seed"] = -1
    return parameters

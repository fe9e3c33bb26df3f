"""Who may see which job."""

import uuid

from django.contrib.auth.base_user import AbstractBaseUser
from django.http import Http404

from .models import ImageJob


def access_job(user: AbstractBaseUser, job_id: uuid.UUID) -> ImageJob:
    """The user's own job (any job for staff), or 404."""
    jobs = ImageJob.objects.all()
    if not getattr(user, "is_staff", False):
        jobs = jobs.filter(owner_id=user.pk)
    job = jobs.filter(pk=job_id).first()
    if job is None:
        raise Http404("No such image job.")
    return job

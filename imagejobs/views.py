import uuid

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from .access import access_job
from .actions import JobActionError, check_cancel
from .cards import render_card
from .http import with_notice
from .queue import snapshot


@require_GET
@login_required
def job_image(request: HttpRequest, job_id: uuid.UUID) -> FileResponse:
    job = access_job(request.user, job_id)
    if not job.image:
        raise Http404("This job has no image yet.")
    response = FileResponse(job.image.open("rb"))
    # The URL carries the job's version, and a finished image never changes.
    response["Cache-Control"] = "private, max-age=31536000, immutable"
    return response


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return JsonResponse({"status": "error", "database": str(exc)}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})


@require_POST
@login_required
def job_cancel(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    """Cancel from the card; the answer is the card as it is now."""
    try:
        job = check_cancel(request.user, job_id)
    except JobActionError as exc:
        job = access_job(request.user, job_id)
        response = HttpResponse(render_card(job, snapshot()), status=400)
        return with_notice(response, str(exc))
    return HttpResponse(render_card(job, snapshot()))

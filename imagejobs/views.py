import uuid

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from . import metrics as _metrics  # noqa: F401  (registers the collector)
from .access import access_job
from .health import health_report


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
    """Is this web process able to serve? Database and channel layer must
    answer (else 503); workers are reported, not required."""
    report = health_report()
    return JsonResponse(report, status=200 if report["status"] != "error" else 503)


@require_GET
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.MAMI_METRICS_TOKEN
    if token and not constant_time_compare(
        request.headers.get("Authorization", ""), f"Bearer {token}"
    ):
        return HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)

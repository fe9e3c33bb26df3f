import uuid

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from django.utils.text import slugify
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from mami.db_outage import OUTAGE_ERRORS, drop_connection
from mami.requests import SignedInRequest

from . import metrics as _metrics  # noqa: F401  (registers the collector)
from .access import access_job
from .health import health_report
from .models import JobPreview


@require_GET
@login_required
def job_image(request: SignedInRequest, job_id: uuid.UUID) -> FileResponse:
    # Staff see every picture (the admin's thumbnails); others only theirs.
    job = access_job(request.user, job_id, as_staff=True)
    if not job.image:
        raise Http404("This job has no image yet.")
    if request.GET.get("download"):
        # Saved under a name that says what it is, not the job's id.
        extension = (job.image.name or "").rsplit(".", 1)[-1]
        name = f"{slugify(job.prompt)[:60].strip('-') or 'mami-picture'}.{extension}"
        return FileResponse(job.image.open("rb"), as_attachment=True, filename=name)
    response = FileResponse(job.image.open("rb"))
    # The URL carries the job's version, and a finished image never changes.
    response["Cache-Control"] = "private, max-age=31536000, immutable"
    return response


@require_GET
@login_required
def job_preview(request: SignedInRequest, job_id: uuid.UUID) -> HttpResponse:
    """The latest live preview of a picture being drawn (404 when there is
    none: not started, or finished)."""
    job = access_job(request.user, job_id, as_staff=True)
    preview = JobPreview.objects.filter(job=job).only("image").first()
    if preview is None:
        raise Http404("This picture has no preview now.")
    response = HttpResponse(bytes(preview.image), content_type="image/webp")
    # The URL carries the preview's time, so one URL is one preview.
    response["Cache-Control"] = "private, max-age=3600"
    return response


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Is this web process able to serve? Database and channel layer must
    answer (else 503); workers are reported, not required. The public sees
    only up or down; staff and holders of the metrics token see why."""
    report = health_report()
    status = 200 if report["status"] != "error" else 503
    if not (_asked_by_staff(request) or _has_metrics_token(request)):
        report = {"status": report["status"]}
    return JsonResponse(report, status=status)


def _asked_by_staff(request: HttpRequest) -> bool:
    # Who is logged in is in the database: with it away, nobody is staff
    # (the metrics token still sees which dependency is down).
    try:
        return bool(getattr(request.user, "is_staff", False))
    except OUTAGE_ERRORS:
        drop_connection()
        return False


def _has_metrics_token(request: HttpRequest) -> bool:
    token = settings.MAMI_METRICS_TOKEN
    return bool(token) and constant_time_compare(
        request.headers.get("Authorization", ""), f"Bearer {token}"
    )


@require_GET
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics: behind MAMI_METRICS_TOKEN; open without one only
    in the embedded default (DEBUG on)."""
    if not settings.MAMI_METRICS_TOKEN and not settings.DEBUG:
        return HttpResponse(
            "Metrics are off: set MAMI_METRICS_TOKEN and scrape with "
            "'Authorization: Bearer <token>'.\n",
            status=403,
            content_type="text/plain",
        )
    if settings.MAMI_METRICS_TOKEN and not _has_metrics_token(request):
        return HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)

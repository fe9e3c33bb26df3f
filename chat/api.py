"""The JSON API under /api/, for scripts and other services.

Session auth (with CSRF) or a per-user token (`Authorization: Bearer …`).
Every error is `{"error": {"code": …, "message": …}}`; another user's job is
a 404. The OpenAPI document is generated from these schemas
(/api/openapi.json, browsable at /api/docs).
"""

import logging
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from django.db import InterfaceError, OperationalError, transaction
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.urls import reverse
from ninja import Field, NinjaAPI, Router, Schema
from ninja import Status as Answer
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer, django_auth
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    StrictStr,
    StringConstraints,
)
from pydantic.json_schema import JsonDict

from imagejobs import checkpoints, positions
from imagejobs.access import access_job
from imagejobs.actions import JobActionError, check_cancel
from imagejobs.bounds import PROMPT_MAX_LENGTH, SIDE_MAX, SIDE_MIN, SIDE_MULTIPLE
from imagejobs.errors import user_message
from imagejobs.limits import LimitReached
from imagejobs.models import UNFINISHED_STATUSES, ImageJob, Status
from imagejobs.overview import status_counts
from imagejobs.tokens import user_for_key
from mami.requests import SignedInRequest
from mami.unavailable import unavailable_response

from .access import access_conversation
from .actions import post_message, start_conversation
from .api_guard import api_error
from .intents import ImageRequest

logger = logging.getLogger(__name__)

SAMPLERS = (
    "Euler", "Euler a", "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun",
    "DPM++ 2S a", "DPM++ 3M SDE", "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast",
    "DPM adaptive", "Restart", "DDIM", "PLMS", "UniPC", "LCM",
)  # fmt: skip


class TokenAuth(HttpBearer):
    openapi_scheme = "bearer"

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = user_for_key(token)
        if user is None:
            raise AuthenticationError(401, "That API token is not valid (or was revoked).")
        request.user = user
        return user


api = NinjaAPI(
    title="mami API",
    version="1",
    description=(
        "Ask for pictures and follow them through the GPU queue. Authenticate with the "
        "session cookie (plus the X-CSRFToken header for writes) or with "
        "`Authorization: Bearer <token>` (`manage.py create_api_token <user>`)."
    ),
    auth=[TokenAuth(), django_auth],
    urls_namespace="api",
)
router = Router(tags=["image"])


# -- schemas ---------------------------------------------------------------


def storable(text: str) -> str:
    """Text every database can store: no NUL, no lone surrogate."""
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return text


def a_number(value: Any) -> Any:
    """JSON `false` is not the number 0, nor "20" the number 20 (but 20.0
    is 20: JSON Schema calls it an integer)."""
    if isinstance(value, bool | str):
        raise ValueError("must be a number")
    return value


# Documents what `storable` enforces (with a readable message).
NO_NUL: JsonDict = {"pattern": "^[^\\u0000]*$"}
NOT_BLANK: JsonDict = {"pattern": "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"}
Int = Annotated[int, BeforeValidator(a_number)]
Float = Annotated[float, BeforeValidator(a_number)]
Text = Annotated[StrictStr, AfterValidator(storable)]


def not_blank(text: str) -> str:
    text = text.strip()
    if not text:
        raise ValueError("must say what to draw")
    return text


# Lengths are checked on the text as sent, so the document's maxLength holds.
Prompt = Annotated[
    StrictStr,
    StringConstraints(min_length=1, max_length=PROMPT_MAX_LENGTH),
    AfterValidator(storable),
    AfterValidator(not_blank),
]


class Parameters(Schema):
    """Generation parameters; anything left out takes its default."""

    model_config = ConfigDict(extra="forbid")

    negative_prompt: Text = Field("", max_length=PROMPT_MAX_LENGTH, json_schema_extra=NO_NUL)
    width: Int = Field(512, ge=SIDE_MIN, le=SIDE_MAX, multiple_of=SIDE_MULTIPLE)
    height: Int = Field(512, ge=SIDE_MIN, le=SIDE_MAX, multiple_of=SIDE_MULTIPLE)
    steps: Int = Field(20, ge=1, le=150)
    cfg_scale: Float = Field(7.0, ge=1.0, le=30.0)
    sampler_name: Literal[SAMPLERS] = "Euler"  # type: ignore[valid-type]
    seed: Int = Field(-1, ge=-1, le=4294967295, description="-1 lets Forge pick one.")
    model: Text | None = Field(
        None,
        max_length=255,
        description="The checkpoint to draw with, as GET /api/image/models lists them "
        "(its name, title, file name or hash). Left out: the conversation's last choice, "
        "else the staff's routing rules, else the default model; empty: the rules, else "
        "the default.",
        json_schema_extra=NO_NUL,
    )


class GenerateIn(Schema):
    model_config = ConfigDict(extra="forbid")

    prompt: Prompt = Field(json_schema_extra=NOT_BLANK)
    # Every field has a default (mypy reads pydantic's Field without them).
    parameters: Parameters = Field(default_factory=Parameters)  # type: ignore[arg-type]
    conversation_id: uuid.UUID | None = Field(
        None, description="Add to this conversation of yours; a new one if left out."
    )


class JobError(Schema):
    code: str
    message: str


class JobOut(Schema):
    id: uuid.UUID
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    status: Literal["queued", "processing", "complete", "error", "canceled"]
    position: int | None = Field(description="Place in line while queued; 1 is next.")
    eta_seconds: float | None = Field(
        description="Expected seconds until the picture is ready; null while no image "
        "worker runs or the image service is down (see service_unavailable_until)."
    )
    service_unavailable_until: datetime | None = Field(
        description="While queued and the image service is down: its next try."
    )
    progress: int = Field(ge=0, le=100)
    attempts: int
    prompt: str
    parameters: Parameters
    model_source: Literal["chosen", "rule", "default", ""] = Field(
        description="How parameters.model was decided; empty: no model was asked for, "
        "Forge drew with the one it had loaded."
    )
    result_seed: int | None
    image_url: str | None
    error: JobError | None
    cancel_requested: bool
    retry_of: uuid.UUID | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class QueueOut(Schema):
    queued: int
    processing: int
    live_workers: int = Field(
        description="Image workers alive now (by their heartbeat), whether or not Forge answers."
    )
    service_unavailable_until: datetime | None


class StatusOut(Schema):
    queue: QueueOut
    jobs: list[JobOut] = Field(description="Your unfinished jobs, next first.")


class ErrorBody(Schema):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorOut(Schema):
    error: ErrorBody


ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut}
# Answers of the calls that queue a picture: also 429 over a fair-use limit.
QUEUE_ERRORS = {**ERRORS, 429: ErrorOut}


def job_out(job: ImageJob, snapshot: positions.QueueSnapshot) -> dict[str, Any]:
    error = None
    if job.status == Status.ERROR:
        error = {"code": job.error_code, "message": user_message(job.error_code)}
    queued = job.status == Status.QUEUED
    eta = snapshot.eta_seconds(job.id) if queued else job.eta_seconds
    return {
        "id": job.id,
        "message_id": job.message_id,
        "conversation_id": job.message.conversation_id,
        "status": job.status,
        "position": snapshot.position(job.id),
        "eta_seconds": round(eta, 1) if eta is not None else None,
        "service_unavailable_until": snapshot.unavailable_until if queued else None,
        "progress": job.progress,
        "attempts": job.attempts,
        "prompt": job.prompt,
        "parameters": {**job.generation_parameters(), "model": job.model},
        "model_source": job.model_source,
        "result_seed": job.result_seed,
        "image_url": reverse("api:job_image", args=[job.id]) if job.image else None,
        "error": error,
        "cancel_requested": job.cancel_requested_at is not None,
        "retry_of": job.retry_of_id,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def _job(request: SignedInRequest, job_id: uuid.UUID) -> ImageJob:
    return access_job(request.user, job_id)


# -- endpoints -------------------------------------------------------------


@router.post("/generate", response={201: JobOut, **QUEUE_ERRORS}, summary="Ask for a picture")
def generate(request: SignedInRequest, body: GenerateIn) -> Answer:
    """Queue a picture; the answer carries its job id, message id, status
    and place in line at once."""
    parameters = body.parameters.model_dump()
    if parameters["model"]:
        parameters["model"] = checkpoints.check_model(parameters["model"])
    with transaction.atomic():
        if body.conversation_id is not None:
            conversation = access_conversation(request.user, body.conversation_id)
        else:
            conversation = start_conversation(request.user)
            if parameters["model"] is None:
                # A new conversation has no last choice: the rules decide,
                # as they would after looking for one.
                parameters["model"] = ""
        _question, answer = post_message(
            conversation,
            f"/image {body.prompt}",
            ImageRequest(body.prompt),
            parameters=parameters,
        )
    job = answer.image_job
    return Answer(201, job_out(job, positions.snapshot(only=[job], reuse_facts=True)))


class ModelsOut(Schema):
    models: list[str] = Field(description="Model names a live image worker offers now.")


@router.get("/models", response={200: ModelsOut, **ERRORS}, summary="Models to choose from")
def models(request: SignedInRequest) -> dict[str, Any]:
    return {"models": checkpoints.choosable()}


@router.get("/status", response={200: StatusOut, **ERRORS}, summary="Queue and your jobs")
def status(request: SignedInRequest) -> dict[str, Any]:
    snapshot = positions.snapshot()
    counts = status_counts()
    mine = ImageJob.objects.filter(owner=request.user, status__in=UNFINISHED_STATUSES)
    # Drawing first, then by place in line.
    in_order = sorted(
        mine.select_related("message").order_by("created_at"),
        key=lambda job: snapshot.position(job.id) or 0,
    )
    return {
        "queue": {
            "queued": counts[Status.QUEUED],
            "processing": counts[Status.PROCESSING],
            "live_workers": snapshot.live_workers,
            "service_unavailable_until": snapshot.unavailable_until,
        },
        "jobs": [job_out(job, snapshot) for job in in_order],
    }


@router.get("/job/{job_id}/status", response={200: JobOut, **ERRORS}, summary="One job")
def job_status(request: SignedInRequest, job_id: uuid.UUID) -> dict[str, Any]:
    return job_out(_job(request, job_id), positions.snapshot())


@router.delete("/job/{job_id}/cancel", response={200: JobOut, **ERRORS}, summary="Cancel a job")
def job_cancel(request: SignedInRequest, job_id: uuid.UUID) -> dict[str, Any]:
    """A queued job is canceled at once; a processing one once Forge has
    been interrupted (`cancel_requested` is true meanwhile)."""
    check_cancel(request.user, job_id)
    return job_out(_job(request, job_id), positions.snapshot())


@router.get(
    "/job/{job_id}/image",
    response={200: None, **ERRORS},
    url_name="job_image",
    summary="The finished picture",
    openapi_extra={
        "responses": {
            200: {
                "description": "The image (PNG unless Forge is set to another format)",
                "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            }
        }
    },
)
def job_image(request: SignedInRequest, job_id: uuid.UUID) -> HttpResponseBase:
    job = _job(request, job_id)
    if not job.image:
        raise Http404("This job has no picture (yet).")
    return FileResponse(job.image.open("rb"), content_type="image/png")


api.add_router("/image", router)


# -- errors: always {"error": {"code", "message"}} -------------------------


def _describe(error: dict[str, Any]) -> dict[str, Any]:
    where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body",))
    return {"field": where or "body", "message": error.get("msg", "is not valid")}


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    details = [_describe(error) for error in exc.errors]
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
    return api_error(400, "invalid_request", f"The request is not valid: {summary}", details)


@api.exception_handler(AuthenticationError)
def on_authentication_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    message = str(exc)
    if message == "Unauthorized":
        message = "Log in, or send an API token: Authorization: Bearer <token>."
    return api_error(401, "not_authenticated", message)


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return api_error(404, "not_found", str(exc) or "Not found.")


@api.exception_handler(JobActionError)
def on_job_action_error(request: HttpRequest, exc: JobActionError) -> HttpResponse:
    return api_error(400, "not_allowed_now", str(exc))


@api.exception_handler(checkpoints.UnknownModel)
def on_unknown_model(request: HttpRequest, exc: checkpoints.UnknownModel) -> HttpResponse:
    return api_error(400, exc.code, exc.message)


@api.exception_handler(LimitReached)
def on_limit_reached(request: HttpRequest, exc: LimitReached) -> HttpResponse:
    response = api_error(429, exc.code, exc.message)
    response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    code = {403: "forbidden", 404: "not_found", 405: "method_not_allowed"}.get(
        exc.status_code, "invalid_request"
    )
    return api_error(exc.status_code, code, str(exc))


@api.exception_handler(OperationalError)
@api.exception_handler(InterfaceError)
def on_database_away(request: HttpRequest, exc: Exception) -> HttpResponse:
    return unavailable_response(request)


@api.exception_handler(Exception)
def on_unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("API request failed: %s %s", request.method, request.path)
    return api_error(500, "internal_error", "Something went wrong on our side.")

"""HTTP client for Stable Diffusion Forge's /sdapi/v1 API.

Every failure leaves this module as a ForgeError with a code from
`errors.ErrorCode` and a `transient` flag; callers never parse HTTP errors.
"""

import base64
import binascii
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import httpx

from .errors import ErrorCode

logger = logging.getLogger(__name__)


class ForgeError(Exception):
    """`transient`: the same call may work if tried again (and counts
    against the circuit breaker). `outage`: Forge could not be reached at
    all, so the job is not to blame and is never failed for it."""

    def __init__(
        self, code: ErrorCode, detail: str, *, transient: bool, outage: bool = False
    ) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.transient = transient
        self.outage = outage


@dataclass(frozen=True)
class Txt2ImgResult:
    # Base64, as Forge sends them: decoding waits for `picture()`, off the
    # GPU's path (it costs a millisecond a picture).
    encoded_images: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    def picture(self) -> bytes:
        """The first image's bytes; ForgeError if it is not base64."""
        try:
            return base64.b64decode(self.encoded_images[0], validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            raise ForgeError(
                ErrorCode.FORGE_ERROR, f"image is not base64: {exc}", transient=False
            ) from exc

    @property
    def seed(self) -> int | None:
        seed = self.info.get("seed")
        return seed if isinstance(seed, int) else None


class CheckpointInfo(NamedTuple):
    """One checkpoint as GET /sdapi/v1/sd-models lists it."""

    title: str
    model_name: str
    hash: str


@dataclass(frozen=True)
class ForgeCheckpoints:
    """What a Forge has (sd-models) and draws with now (options)."""

    models: list[CheckpointInfo]
    # The model_name of the configured checkpoint ("" if Forge names none).
    current: str


@dataclass(frozen=True)
class Progress:
    progress: float
    eta_relative: float
    job_count: int
    # The live preview (base64, in Forge's samples_format), when asked for
    # and Forge has one.
    current_image: str | None = None

    @property
    def active(self) -> bool:
        # Forge reports job_count 0 when idle, -1 while a job starts.
        return self.job_count != 0


def _error_text(response: httpx.Response) -> str:
    """Forge puts the reason in `message`, A1111 in `errors`, FastAPI in `detail`."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:2000]
    if isinstance(body, dict):
        for key in ("message", "errors", "detail"):
            value = body.get(key)
            if value:
                text = value if isinstance(value, str) else json.dumps(value)
                error = body.get("error")
                return f"{error}: {text}" if error and key != "detail" else text
    return json.dumps(body)[:2000]


def classify_response(response: httpx.Response) -> ForgeError:
    """The failure an HTTP error answer from Forge (4xx, 5xx) stands for."""
    text = _error_text(response)
    detail = f"HTTP {response.status_code}: {text}"
    if response.status_code == 422:
        return ForgeError(ErrorCode.INVALID_REQUEST, detail, transient=False)
    if response.status_code >= 500:
        if "OutOfMemory" in text or "out of memory" in text.lower():
            return ForgeError(ErrorCode.FORGE_OUT_OF_MEMORY, detail, transient=True)
        return ForgeError(ErrorCode.FORGE_ERROR, detail, transient=True)
    # 401/404 and friends mean the server is misconfigured (no --api, auth).
    return ForgeError(ErrorCode.FORGE_ERROR, detail, transient=False)


def classify_transport_error(exc: httpx.HTTPError, *, timeout: float) -> ForgeError:
    """The failure a call that got no HTTP answer stands for."""
    if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
        # Nothing reached Forge: an outage, never the job's fault.
        return ForgeError(ErrorCode.FORGE_UNREACHABLE, repr(exc), transient=True, outage=True)
    if isinstance(exc, httpx.TimeoutException):
        return ForgeError(ErrorCode.FORGE_TIMEOUT, f"no answer within {timeout:g}s", transient=True)
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        # Forge took the request and the connection broke mid-call.
        return ForgeError(ErrorCode.FORGE_UNREACHABLE, repr(exc), transient=True)
    return ForgeError(ErrorCode.FORGE_ERROR, repr(exc), transient=True)


class ForgeClient:
    def __init__(self, base_url: str, *, timeout: float = 180.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        # txt2img holds its connection for the whole job; progress and
        # interrupt use their own client so they are never queued behind it.
        self._generate = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=5.0, pool=5.0),
        )
        self._control = httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(5.0))

    def close(self) -> None:
        self._generate.close()
        self._control.close()

    def _request(self, client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise classify_transport_error(exc, timeout=self.timeout) from exc
        if response.status_code >= 400:
            raise classify_response(response)
        try:
            return response.json()
        except ValueError as exc:
            raise ForgeError(
                ErrorCode.FORGE_ERROR,
                f"{method} {path} answered non-JSON: {response.text[:500]!r}",
                transient=False,
            ) from exc

    def txt2img(
        self,
        payload: dict[str, Any],
        *,
        on_sent: Callable[[], object] | None = None,
        on_answer: Callable[[int], object] | None = None,
    ) -> Txt2ImgResult:
        """Draw. `on_sent` is called once the whole request is on its way,
        `on_answer` with the status as soon as the answer's headers are in
        (Forge answers when the picture is drawn, before its body is read)."""

        def trace(event: str, info: dict[str, Any]) -> None:
            if event == "http11.send_request_body.complete" and on_sent is not None:
                on_sent()
            elif event == "http11.receive_response_headers.complete" and on_answer is not None:
                on_answer(info["return_value"][1])

        extensions = {"trace": trace} if on_sent or on_answer else {}
        body = self._request(
            self._generate, "POST", "/sdapi/v1/txt2img", json=payload, extensions=extensions
        )
        if not isinstance(body, dict):
            raise ForgeError(
                ErrorCode.FORGE_ERROR, f"unexpected body {body!r:.200}", transient=False
            )
        images = body.get("images")
        if not isinstance(images, list) or not images:
            raise ForgeError(ErrorCode.FORGE_ERROR, "txt2img returned no image", transient=False)
        info = body.get("info")
        # `info` is a JSON document inside a string.
        if isinstance(info, str):
            try:
                info = json.loads(info)
            except ValueError:
                info = {"raw": info}
        return Txt2ImgResult(encoded_images=images, info=info if isinstance(info, dict) else {})

    def progress(self, *, with_image: bool = False) -> Progress:
        """Forge's global progress; `with_image` also fetches the live
        preview (Forge encodes it only when asked)."""
        skip = "false" if with_image else "true"
        body = self._request(
            self._control, "GET", "/sdapi/v1/progress", params={"skip_current_image": skip}
        )
        state = body.get("state") or {}
        image = body.get("current_image")
        return Progress(
            progress=float(body.get("progress") or 0.0),
            eta_relative=float(body.get("eta_relative") or 0.0),
            job_count=int(state.get("job_count") or 0),
            current_image=image if isinstance(image, str) and image else None,
        )

    def interrupt(self) -> None:
        self._request(self._control, "POST", "/sdapi/v1/interrupt")

    def checkpoints(self) -> "ForgeCheckpoints":
        """The checkpoints this Forge has (`/sd-models`, as scanned at its
        start) and the one configured now (`/options`), which is the one
        a request without an override draws with."""
        listed = self._request(self._control, "GET", "/sdapi/v1/sd-models")
        options = self._request(self._control, "GET", "/sdapi/v1/options")
        models = [
            CheckpointInfo(
                title=str(item.get("title") or ""),
                model_name=str(item.get("model_name") or ""),
                hash=str(item.get("hash") or ""),
            )
            for item in (listed if isinstance(listed, list) else [])
            if isinstance(item, dict) and item.get("model_name")
        ]
        configured = options.get("sd_model_checkpoint") if isinstance(options, dict) else None
        current = next((m for m in models if configured in {m.title, m.model_name, m.hash}), None)
        return ForgeCheckpoints(models=models, current=current.model_name if current else "")


def image_extension(data: bytes) -> str:
    """File extension for Forge's samples_format (png unless configured)."""
    if data.startswith(b"\xff\xd8"):
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "png"

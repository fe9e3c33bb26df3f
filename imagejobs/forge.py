"""HTTP client for Stable Diffusion Forge's /sdapi/v1 API.

Every failure leaves this module as a ForgeError with a code from
`errors.ErrorCode` and a `transient` flag; callers never parse HTTP errors.
"""

import base64
import binascii
import json
import logging
from dataclasses import dataclass, field
from typing import Any

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
    images: list[bytes]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def seed(self) -> int | None:
        seed = self.info.get("seed")
        return seed if isinstance(seed, int) else None


@dataclass(frozen=True)
class Progress:
    progress: float
    eta_relative: float
    job_count: int

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

    def txt2img(self, payload: dict[str, Any]) -> Txt2ImgResult:
        body = self._request(self._generate, "POST", "/sdapi/v1/txt2img", json=payload)
        if not isinstance(body, dict):
            raise ForgeError(
                ErrorCode.FORGE_ERROR, f"unexpected body {body!r:.200}", transient=False
            )
        images = []
        for encoded in body.get("images") or []:
            try:
                images.append(base64.b64decode(encoded, validate=True))
            except (binascii.Error, TypeError, ValueError) as exc:
                raise ForgeError(
                    ErrorCode.FORGE_ERROR, f"image is not base64: {exc}", transient=False
                ) from exc
        if not images:
            raise ForgeError(ErrorCode.FORGE_ERROR, "txt2img returned no image", transient=False)
        info = body.get("info")
        # `info` is a JSON document inside a string.
        if isinstance(info, str):
            try:
                info = json.loads(info)
            except ValueError:
                info = {"raw": info}
        return Txt2ImgResult(images=images, info=info if isinstance(info, dict) else {})

    def progress(self) -> Progress:
        body = self._request(
            self._control, "GET", "/sdapi/v1/progress", params={"skip_current_image": "true"}
        )
        state = body.get("state") or {}
        return Progress(
            progress=float(body.get("progress") or 0.0),
            eta_relative=float(body.get("eta_relative") or 0.0),
            job_count=int(state.get("job_count") or 0),
        )

    def interrupt(self) -> None:
        self._request(self._control, "POST", "/sdapi/v1/interrupt")


def image_extension(data: bytes) -> str:
    """File extension for Forge's samples_format (png unless configured)."""
    if data.startswith(b"\xff\xd8"):
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "png"

"""Each way Forge can fail maps to one failure class: a code, whether the
same call may work again (transient) and whether Forge was unreachable
(an outage never fails a job). Fast: no server, just the classification."""

import httpx
import pytest

from imagejobs.errors import ErrorCode
from imagejobs.forge import classify_response, classify_transport_error

TXT2IMG = httpx.Request("POST", "http://forge/sdapi/v1/txt2img")


def _answer(status: int, **body: object) -> httpx.Response:
    return httpx.Response(status, request=TXT2IMG, **body)


@pytest.mark.parametrize(
    ("response", "code", "transient", "detail"),
    [
        # pydantic v2 validation (Forge) and a string detail (HTTPException).
        (
            _answer(
                422,
                json={"detail": [{"type": "int_parsing", "loc": ["body", "steps"], "msg": "bad"}]},
            ),
            ErrorCode.INVALID_REQUEST,
            False,
            "int_parsing",
        ),
        (
            _answer(422, json={"detail": "Script 'x' not found"}),
            ErrorCode.INVALID_REQUEST,
            False,
            "Script 'x' not found",
        ),
        # Forge's 500 for CUDA out of memory, and A1111's `errors` shape.
        (
            _answer(
                500,
                json={
                    "error": "OutOfMemoryError",
                    "detail": "",
                    "body": "",
                    "message": "CUDA out of memory. Tried to allocate 2.00 GiB",
                },
            ),
            ErrorCode.FORGE_OUT_OF_MEMORY,
            True,
            "OutOfMemoryError: CUDA out of memory",
        ),
        (
            _answer(500, json={"error": "RuntimeError", "errors": "CUDA error: out of memory"}),
            ErrorCode.FORGE_OUT_OF_MEMORY,
            True,
            "RuntimeError: CUDA error",
        ),
        # Any other server error, JSON or older builds' plain text.
        (
            _answer(500, json={"error": "ValueError", "message": "NaN in latent"}),
            ErrorCode.FORGE_ERROR,
            True,
            "ValueError: NaN in latent",
        ),
        (_answer(500, text="Internal Server Error"), ErrorCode.FORGE_ERROR, True, "Internal"),
        (_answer(503, text="<html>bad gateway</html>"), ErrorCode.FORGE_ERROR, True, "HTTP 503"),
        # A misconfigured server (no --api, wrong credentials): trying again won't help.
        (_answer(404, json={"detail": "Not Found"}), ErrorCode.FORGE_ERROR, False, "Not Found"),
        (
            _answer(401, json={"detail": "Not authenticated"}),
            ErrorCode.FORGE_ERROR,
            False,
            "Not authenticated",
        ),
    ],
)
def test_an_error_answer_is_classified_by_status_and_body(response, code, transient, detail):
    error = classify_response(response)
    assert (error.code, error.transient, error.outage) == (code, transient, False)
    assert detail in error.detail
    assert error.detail.startswith(f"HTTP {response.status_code}: ")


@pytest.mark.parametrize(
    ("exc", "code", "transient", "outage"),
    [
        (httpx.ConnectError("refused", request=TXT2IMG), ErrorCode.FORGE_UNREACHABLE, True, True),
        (httpx.ConnectTimeout("slow", request=TXT2IMG), ErrorCode.FORGE_UNREACHABLE, True, True),
        (httpx.ReadTimeout("hung", request=TXT2IMG), ErrorCode.FORGE_TIMEOUT, True, False),
        (
            httpx.RemoteProtocolError("dropped", request=TXT2IMG),
            ErrorCode.FORGE_UNREACHABLE,
            True,
            False,
        ),
        (httpx.ReadError("reset", request=TXT2IMG), ErrorCode.FORGE_UNREACHABLE, True, False),
        (httpx.DecodingError("garbled", request=TXT2IMG), ErrorCode.FORGE_ERROR, True, False),
    ],
)
def test_a_call_without_an_answer_is_classified_by_what_broke(exc, code, transient, outage):
    error = classify_transport_error(exc, timeout=180)
    assert (error.code, error.transient, error.outage) == (code, transient, outage)


def test_a_timeout_names_the_limit():
    error = classify_transport_error(httpx.ReadTimeout("hung", request=TXT2IMG), timeout=42)
    assert error.detail == "no answer within 42s"

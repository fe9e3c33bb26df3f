"""Forge's HTTP protocol as the simulator speaks it: the txt2img request
model, FastAPI's validation errors, and the answers' bodies
(docs/forge-api.md)."""

import json
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError

from .checkpoints import Checkpoint

VERSION = "f2.0.1v1.10.1-mami-simulator"
SAMPLERS = ["DPM++ 2M", "Euler a", "Euler", "DDIM", "UniPC"]

# What a failure knob makes txt2img do.
FAULTS = frozenset({"oom", "http500", "http422", "hang", "freeze", "drop", "slow"})


class Txt2ImgRequest(BaseModel):
    """Forge's txt2img request model, as far as the simulator reads it.

    Like Forge's (pydantic v2, lax): every field optional and nullable,
    numeric strings coerced, anything else answered with pydantic's own 422
    error items; other keys are echoed back as given.
    """

    model_config = ConfigDict(extra="allow")

    prompt: str | None = ""
    negative_prompt: str | None = ""
    steps: int | None = 50
    width: int | None = 512
    height: int | None = 512
    cfg_scale: float | None = 7.0
    distilled_cfg_scale: float | None = 3.5
    sampler_name: str | None = None
    sampler_index: str | None = "Euler"
    scheduler: str | None = None
    seed: int | None = -1
    subseed: int | None = -1
    batch_size: int | None = 1
    n_iter: int | None = 1
    send_images: bool | None = True
    save_images: bool | None = False
    override_settings: dict[str, Any] | None = None


class ValidationError(Exception):
    """Answered as FastAPI does: 422 {"detail": [pydantic error items]}."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("validation")
        self.errors = errors


def parse_txt2img(raw: bytes) -> dict[str, Any]:
    try:
        request = Txt2ImgRequest.model_validate_json(raw)
    except PydanticValidationError as exc:
        # FastAPI puts the request body first in every error's location.
        raise ValidationError(
            [{**error, "loc": ["body", *error["loc"]]} for error in json.loads(exc.json())]
        ) from None
    return request.model_dump()


OUT_OF_MEMORY = {
    "error": "OutOfMemoryError",
    "detail": "",
    "body": "",
    "message": "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total "
    "capacity; 5.12 GiB already allocated)",
}


def side(value: object) -> int:
    """A picture's width or height as Forge draws it."""
    return max(64, min(int(value or 512), 2048))  # type: ignore[call-overload]


def txt2img_info(
    params: dict[str, Any],
    *,
    seeds: list[int],
    steps: int,
    infotexts: list[str],
    checkpoint: Checkpoint,
    job_timestamp: str,
) -> dict[str, Any]:
    """The `info` of a txt2img answer (a JSON string in the answer)."""
    prompt = params.get("prompt") or ""
    negative = params.get("negative_prompt") or ""
    count = len(seeds)
    return {
        "prompt": prompt,
        "all_prompts": [prompt] * count,
        "negative_prompt": negative,
        "all_negative_prompts": [negative] * count,
        "seed": seeds[0],
        "all_seeds": seeds,
        "subseed": seeds[0],
        "all_subseeds": seeds,
        "subseed_strength": 0,
        "width": side(params.get("width")),
        "height": side(params.get("height")),
        "sampler_name": sampler_of(params),
        "cfg_scale": params.get("cfg_scale"),
        "steps": steps,
        "batch_size": params.get("batch_size") or 1,
        "restore_faces": False,
        "sd_model_name": checkpoint.model_name,
        "sd_model_hash": checkpoint.short_hash,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "extra_generation_params": {},
        "index_of_first_image": 0,
        "infotexts": infotexts,
        "styles": [],
        "job_timestamp": job_timestamp,
        "clip_skip": 1,
        "is_using_inpainting_conditioning": False,
        "version": VERSION,
    }


def sampler_of(params: dict[str, Any]) -> str:
    return params.get("sampler_name") or params.get("sampler_index") or "Euler"


def infotext(params: dict[str, Any], seed: int, steps: int, checkpoint: Checkpoint) -> str:
    """The parameters line Forge writes into each picture."""
    width, height = side(params.get("width")), side(params.get("height"))
    return (
        f"{params.get('prompt') or ''}\nSteps: {steps}, Sampler: {sampler_of(params)}, "
        f"CFG scale: {params.get('cfg_scale')}, Seed: {seed}, Size: {width}x{height}, "
        f"Model hash: {checkpoint.short_hash}, Model: {checkpoint.model_name}, "
        f"Version: {VERSION}"
    )

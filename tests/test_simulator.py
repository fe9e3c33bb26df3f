"""The simulator keeps Forge's HTTP contract (docs/forge-api.md)."""

import base64
import io
import json
import threading

import httpx
from PIL import Image

from tests.helpers import sim_control


def test_txt2img_returns_a_real_png_and_info_as_a_json_string(forge):
    body = httpx.post(
        f"{forge.url}/sdapi/v1/txt2img",
        json={"prompt": "a red fox", "steps": 5, "width": 320, "height": 256, "seed": 1234},
        timeout=30,
    ).json()
    picture = Image.open(io.BytesIO(base64.b64decode(body["images"][0])))
    assert picture.format == "PNG"
    assert picture.size == (320, 256)
    assert "Seed: 1234" in picture.info["parameters"]
    info = json.loads(body["info"])
    assert info["seed"] == 1234
    assert info["all_seeds"] == [1234]
    assert body["parameters"]["steps"] == 5


def test_same_prompt_and_seed_draw_the_same_picture(forge):
    payload = {"prompt": "an owl", "steps": 2, "seed": 5}
    first = httpx.post(f"{forge.url}/sdapi/v1/txt2img", json=payload, timeout=30).json()
    second = httpx.post(f"{forge.url}/sdapi/v1/txt2img", json=payload, timeout=30).json()
    assert first["images"] == second["images"]


def test_progress_is_idle_between_jobs(forge):
    body = httpx.get(f"{forge.url}/sdapi/v1/progress", timeout=5).json()
    assert body["progress"] == 0.0
    assert body["eta_relative"] == 0.0
    assert body["state"]["job_count"] == 0
    assert body["current_image"] is None


def test_progress_moves_while_a_job_runs_and_interrupt_cuts_it_short(forge):
    forge.seconds_per_step = 0.05
    result: dict[str, object] = {}

    def generate() -> None:
        result["response"] = httpx.post(
            f"{forge.url}/sdapi/v1/txt2img", json={"prompt": "x", "steps": 200}, timeout=30
        )

    thread = threading.Thread(target=generate)
    thread.start()
    seen = []
    for _ in range(40):
        body = httpx.get(f"{forge.url}/sdapi/v1/progress", timeout=5).json()
        if body["state"]["job_count"]:
            seen.append(body["progress"])
        if len(seen) > 3 and seen[-1] > 0.02:
            break
        threading.Event().wait(0.05)
    assert seen
    assert seen[-1] > seen[0]
    assert httpx.post(f"{forge.url}/sdapi/v1/interrupt", timeout=5).json() == {}
    thread.join(timeout=10)
    # Like Forge, an interrupted job still answers 200 with its partial image.
    assert result["response"].status_code == 200
    assert sim_control(forge)["stats"]["interrupted"] == 1


def test_bad_fields_get_pydantic_shaped_422s(forge):
    response = httpx.post(f"{forge.url}/sdapi/v1/txt2img", json={"steps": "abc"}, timeout=5)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "int_parsing"
    assert response.json()["detail"][0]["loc"] == ["body", "steps"]
    no_body = httpx.post(f"{forge.url}/sdapi/v1/txt2img", timeout=5)
    assert no_body.status_code == 422
    assert no_body.json()["detail"][0]["type"] == "missing"


def test_generations_are_serialized_like_forges_queue_lock(forge):
    threads = [
        threading.Thread(
            target=httpx.post,
            args=(f"{forge.url}/sdapi/v1/txt2img",),
            kwargs={"json": {"prompt": f"p{n}", "steps": 5}, "timeout": 30},
        )
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = sim_control(forge)["stats"]
    assert stats["completed"] == 4
    assert stats["max_concurrent_generations"] == 1


def test_models_options_and_unknown_routes(forge):
    models = httpx.get(f"{forge.url}/sdapi/v1/sd-models", timeout=5).json()
    assert models[0]["model_name"] == "mami-sim"
    assert httpx.get(f"{forge.url}/sdapi/v1/options", timeout=5).json()["samples_format"] == "png"
    bad = httpx.post(
        f"{forge.url}/sdapi/v1/options", json={"sd_model_checkpoint": "nope"}, timeout=5
    )
    assert bad.status_code == 500
    assert "not found" in bad.json()["message"]
    missing = httpx.get(f"{forge.url}/sdapi/v1/ping", timeout=5)
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not Found"}

"""The simulator's checkpoints behave as Forge's do (docs/forge-api.md):
listed, loaded one at a time, switched per request at a cost, an unknown
alias dropped silently, and POST /options counted."""

import json
import time

import httpx

from tests.helpers import sim_control


def _draw(sim, **body: object) -> dict:
    answer = httpx.post(
        f"{sim.url}/sdapi/v1/txt2img", json={"prompt": "fox", "steps": 2, **body}, timeout=30
    )
    assert answer.status_code == 200
    return json.loads(answer.json()["info"])


def test_the_checkpoints_are_listed_and_one_is_loaded(forge):
    models = httpx.get(f"{forge.url}/sdapi/v1/sd-models").json()
    assert [m["model_name"] for m in models] == ["mami-sim", "anime_mami-anime", "mami-photo"]
    assert models[1]["title"] == "anime/mami-anime.safetensors [a71e3b9c40]"
    options = httpx.get(f"{forge.url}/sdapi/v1/options").json()
    assert options["sd_model_checkpoint"] == models[0]["title"]
    info = _draw(forge)
    assert (info["sd_model_name"], info["sd_model_hash"]) == ("mami-sim", "5ea7f00d12")


def test_a_request_for_another_checkpoint_pays_the_switch_once(forge):
    sim_control(forge, switch_seconds=0.4)
    began = time.monotonic()
    info = _draw(forge, override_settings={"sd_model_checkpoint": "mami-photo"})
    switched = time.monotonic() - began
    assert info["sd_model_name"] == "mami-photo"
    assert "Model: mami-photo" in info["infotexts"][0]
    began = time.monotonic()
    info = _draw(forge, override_settings={"sd_model_checkpoint": "9f0c2d7e55"})
    again = time.monotonic() - began
    assert info["sd_model_name"] == "mami-photo", "the short hash is an alias too"
    assert switched >= 0.4 > again
    stats = sim_control(forge)["stats"]
    assert stats["switches"] == 1
    assert stats["models_drawn"] == ["mami-photo", "mami-photo"]
    # Restored afterwards (Forge's default): the configured model is unchanged.
    options = httpx.get(f"{forge.url}/sdapi/v1/options").json()
    assert options["sd_model_checkpoint"] == "mami-sim.safetensors [5ea7f00d12]"


def test_not_restored_the_override_stays_the_configured_model(forge):
    _draw(
        forge,
        override_settings={"sd_model_checkpoint": "anime_mami-anime"},
        override_settings_restore_afterwards=False,
    )
    options = httpx.get(f"{forge.url}/sdapi/v1/options").json()
    assert options["sd_model_checkpoint"] == "anime/mami-anime.safetensors [a71e3b9c40]"
    assert _draw(forge)["sd_model_name"] == "anime_mami-anime"
    assert sim_control(forge)["stats"]["options_writes"] == 0


def test_an_unknown_alias_is_dropped_silently(forge):
    info = _draw(forge, override_settings={"sd_model_checkpoint": "no-such-model"})
    assert info["sd_model_name"] == "mami-sim"
    assert sim_control(forge)["stats"]["switches"] == 0


def test_post_options_is_counted_and_refuses_an_unknown_model(forge):
    answer = httpx.post(f"{forge.url}/sdapi/v1/options", json={"sd_model_checkpoint": "nope"})
    assert answer.status_code == 500
    assert "model 'nope' not found" in answer.json()["message"]
    answer = httpx.post(f"{forge.url}/sdapi/v1/options", json={"sd_model_checkpoint": "mami-photo"})
    assert answer.status_code == 200
    assert _draw(forge)["sd_model_name"] == "mami-photo"
    assert sim_control(forge)["stats"]["options_writes"] == 2

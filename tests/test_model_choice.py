"""A picture drawn with the checkpoint it asked for: Forge is told per
request (never through /options), and a picture Forge drew with another
model fails with a readable message."""

import pytest
from django.utils import translation

from chat.actions import check_regenerate
from imagejobs import positions
from imagejobs.cards import render_card
from imagejobs.drawing import txt2img_payload
from imagejobs.errors import ErrorCode
from imagejobs.models import ImageJob, ModelRoute, Status
from imagejobs.tokens import create_token
from imagejobs.worker import Worker
from tests.helpers import HTMX, make_conversation, request_picture, run_python, sim_control

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_worker_asks_forge_for_the_model_per_request(alice, forge):
    job = request_picture(make_conversation(alice), "a fox", steps=2, model="mami-photo")
    payload = txt2img_payload(job)
    assert payload["override_settings"]["sd_model_checkpoint"] == "mami-photo"
    assert payload["override_settings_restore_afterwards"] is False
    Worker(forge.url, worker_id="gpu-test").step()
    job.refresh_from_db()
    assert job.status == Status.COMPLETE
    assert job.result_info["sd_model_name"] == "mami-photo"
    stats = sim_control(forge)["stats"]
    assert stats["models_drawn"] == ["mami-photo"]
    assert stats["options_writes"] == 0, "never changes the model for everyone"
    assert "mami-photo" in render_card(job, positions.snapshot())
    # Regenerate keeps the model.
    again = check_regenerate(alice, job.id)
    assert ImageJob.objects.get(message=again).model == "mami-photo"


def test_no_model_asked_means_no_override(alice, forge):
    job = request_picture(make_conversation(alice), "a fox", steps=2)
    assert "sd_model_checkpoint" not in txt2img_payload(job).get("override_settings", {})


def test_a_picture_drawn_with_another_model_fails_readably(alice, forge):
    # Forge drops a checkpoint it does not know and draws with its own.
    job = request_picture(make_conversation(alice), "a fox", steps=2, model="retired-model")
    Worker(forge.url, worker_id="gpu-test").step()
    job.refresh_from_db()
    assert job.status == Status.ERROR
    assert job.error_code == ErrorCode.WRONG_MODEL
    assert "asked for model 'retired-model', Forge drew with 'mami-sim'" in job.error_detail
    assert not job.image
    assert "another model than the one asked for" in render_card(job, positions.snapshot())
    with translation.override("tr"):
        turkish = render_card(job, positions.snapshot())
    assert "istenenden başka bir modelle" in turkish


@pytest.fixture
def offering(forge):
    """A live worker whose Forge has the simulator's three checkpoints."""
    from imagejobs import workers

    worker = Worker(forge.url, worker_id="gpu-test")
    workers.register("gpu-test", forge.url)
    worker.read_checkpoints()
    return worker


def test_a_model_is_chosen_in_the_composer_or_with_the_command(client, alice, offering):
    conversation = make_conversation(alice)
    client.force_login(alice)
    page = client.get(f"/conversations/{conversation.id}/").content.decode()
    assert '<option value="mami-photo">mami-photo</option>' in page
    url = f"/conversations/{conversation.id}/messages/"
    assert (
        client.post(url, {"text": "/image a fox", "model": "mami-photo"}, **HTMX).status_code == 200
    )
    assert client.post(url, {"text": "/image --model mami-anime an owl"}, **HTMX).status_code == 200
    models = dict(ImageJob.objects.values_list("prompt", "model"))
    assert models == {"a fox": "mami-photo", "an owl": "anime_mami-anime"}
    # No model named: the conversation's last choice.
    client.post(url, {"text": "draw a cat"}, **HTMX)
    assert ImageJob.objects.get(prompt="cat").model == "anime_mami-anime"
    page = client.get(f"/conversations/{conversation.id}/").content.decode()
    assert '<option value="anime_mami-anime" selected>' in page


def test_an_unknown_model_is_refused_with_the_valid_names_and_nothing_is_written(
    client, alice, offering
):
    conversation = make_conversation(alice)
    client.force_login(alice)
    url = f"/conversations/{conversation.id}/messages/"
    for data in (
        {"text": "/image --model dreamshaper a fox"},
        {"text": "/image a fox", "model": "dreamshaper"},
    ):
        answer = client.post(url, data, **HTMX)
        assert answer.status_code == 400
        assert (
            "There is no model “dreamshaper”. Choose one of: anime_mami-anime, mami-photo, "
            "mami-sim." in answer.content.decode()
        )
    assert not ImageJob.objects.exists()
    assert not conversation.messages.exists()


def test_the_api_takes_a_model_lists_them_and_refuses_an_unknown_one(client, alice, offering):
    from tests.test_api import assert_error, call, counts

    token = create_token(alice, "tests")[1]
    listed = call(client, "get", "/models", token).json()
    assert listed == {"models": ["anime_mami-anime", "mami-photo", "mami-sim"]}
    # Any name Forge accepts; the answer names the model itself.
    made = call(
        client,
        "post",
        "/generate",
        token,
        {"prompt": "an owl", "parameters": {"model": "mami-anime"}},
    )
    assert made.status_code == 201, made.content
    assert made.json()["parameters"]["model"] == "anime_mami-anime"
    assert made.json()["model_source"] == "chosen"
    before = counts()
    refused = call(
        client, "post", "/generate", token, {"prompt": "a fox", "parameters": {"model": "sdxl"}}
    )
    assert_error(
        refused,
        400,
        "unknown_model",
        "There is no model “sdxl”. Choose one of: anime_mami-anime, mami-photo, mami-sim.",
    )
    assert counts() == before


def _ask(client, conversation, text: str, **data: str) -> ImageJob:
    answer = client.post(
        f"/conversations/{conversation.id}/messages/", {"text": text, **data}, **HTMX
    )
    assert answer.status_code == 200, answer.content
    return ImageJob.objects.order_by("-created_at").first()


def test_routing_rules_choose_the_model_unless_the_user_picked_one(
    client, alice, offering, settings
):
    settings.MAMI_DEFAULT_MODEL = "mami-sim"
    # Order decides; a rule whose model no live worker offers is passed by.
    ModelRoute.objects.create(order=1, words="retro", model="sd15-retired")
    ModelRoute.objects.create(order=2, words="anime, manga style", model="mami-anime")
    ModelRoute.objects.create(order=3, pattern=r"photo(graph)?s?\b|retro", model="mami-photo")
    ModelRoute.objects.create(order=0, words="anime", model="mami-photo", enabled=False)
    conversation = make_conversation(alice)
    client.force_login(alice)
    automatic = {"model": ""}
    assert _ask(client, conversation, "/image an ANIME fox", **automatic).model == (
        "anime_mami-anime"
    )
    job = _ask(client, conversation, "/image a retro photograph of an anime owl", **automatic)
    assert (job.model, job.model_source) == ("anime_mami-anime", "rule")
    job = _ask(client, conversation, "/image a retro car", **automatic)
    assert (job.model, job.model_source) == ("mami-photo", "rule")
    # Whole words only: "animated" is not "anime".
    job = _ask(client, conversation, "/image an animated cat", **automatic)
    assert (job.model, job.model_source) == ("mami-sim", "default")
    # The user's choice wins over every rule.
    job = _ask(client, conversation, "/image an anime fox", model="mami-sim")
    assert (job.model, job.model_source) == ("mami-sim", "chosen")
    job = _ask(client, conversation, "/image --model mami-photo manga style cats")
    assert (job.model, job.model_source) == ("mami-photo", "chosen")
    assert 'title="Model: chosen"' in render_card(job, positions.snapshot())


def test_a_rule_must_match_something_and_its_pattern_must_be_valid(admin_client):
    url = "/admin/imagejobs/modelroute/add/"
    for data, error in (
        ({"words": " , ", "pattern": ""}, "Give the rule some words or a pattern to match."),
        ({"pattern": "anime("}, "The pattern cannot be used: missing ): anime("),
        # RE2 has no backreferences: no pattern can make matching slow.
        ({"pattern": r"(a)\1"}, "The pattern cannot be used: invalid escape sequence"),
    ):
        answer = admin_client.post(
            url, {"order": 0, "model": "mami-photo", "enabled": "on", **data}
        )
        assert answer.status_code == 200
        assert error in answer.content.decode()
    assert not ModelRoute.objects.exists()
    answer = admin_client.post(url, {"order": 0, "words": "anime", "model": "mami-photo"})
    assert answer.status_code == 302
    assert ModelRoute.objects.get().words == "anime"


def test_a_pattern_that_backtracks_exponentially_still_answers_at_once(alice):
    """`(a+)+$` on Python's `re` takes seconds at 26 letters and forever at
    40: a staff member's slip would stall every user. On RE2 a prompt of
    10,000 characters is searched at once. In a process of its own, so a
    hang fails the test instead of stopping the suite."""
    script = (
        "import time, django\n"
        "django.setup()\n"
        "from imagejobs.route_rules import check_rule, matches\n"
        "check_rule('', '(a+)+$')\n"
        "started = time.monotonic()\n"
        "for prompt in ('a' * 40 + 'X', 'a' * 10_000 + 'X', 'a' * 9_999):\n"
        "    found = matches('', '(a+)+$', prompt)\n"
        "print(found, round(time.monotonic() - started, 3))\n"
    )
    done = run_python(script, timeout=20, DJANGO_SETTINGS_MODULE="mami.settings")
    assert done.returncode == 0, done.stderr
    found, seconds = done.stdout.split()
    # A prompt is searched up to its longest allowed length, all "a"s: a match.
    assert found == "True"
    assert float(seconds) < 0.5

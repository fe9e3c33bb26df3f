"""The switch-aware scheduler: a worker takes jobs for the model it has
loaded before the fair order's next one, within a bound; the positions on
the cards are the order the GPUs draw in."""

from datetime import timedelta

import pytest
from django.utils import timezone

from imagejobs import positions, workers
from imagejobs.models import ImageJob, Status
from imagejobs.scheduling import Bound, Gpu, Waiting, pick, plan
from imagejobs.worker import Worker
from simulators.forge import ForgeSimulator
from simulators.forge.checkpoints import DEFAULT_CHECKPOINTS, find
from tests.helpers import make_conversation, request_picture, serving, sim_control

BOUND = Bound(max_wait=60, max_passes=3, lookahead=10)
NOW = timezone.now()


def _line(*models: str) -> list[tuple[int, Waiting]]:
    return list(enumerate(Waiting(f"j{n}", model) for n, model in enumerate(models)))


def test_a_worker_takes_the_head_when_it_fits_else_a_job_for_its_model():
    assert pick(_line("a", "b"), "a", None, NOW, BOUND).index == 0
    assert pick(_line("", "b"), "a", None, NOW, BOUND).index == 0, "any model will do"
    chosen = pick(_line("b", "c", "a"), "a", None, NOW, BOUND)
    assert (chosen.index, chosen.passed) == (2, (0, 1))
    # No job for its model: the head, with a switch.
    assert pick(_line("b", "c"), "a", None, NOW, BOUND).index == 0
    # Not knowing what is loaded: the fair order.
    assert pick(_line("b", "a"), "", None, NOW, BOUND).index == 0


def test_a_job_passed_over_enough_times_or_long_enough_or_put_first_is_taken():
    line = _line("b", "a")
    line[0][1].passed_over = 3
    assert pick(line, "a", None, NOW, BOUND).index == 0
    line[0][1].passed_over = 2
    line[0][1].first_passed_at = NOW - timedelta(seconds=60)
    assert pick(line, "a", None, NOW, BOUND).index == 0
    line[0][1].first_passed_at = NOW - timedelta(seconds=59)
    assert pick(line, "a", None, NOW, BOUND).index == 1
    line[0][1].priority = 1
    assert pick(line, "a", None, NOW, BOUND).index == 0
    # An overdue job behind the head is not passed over either.
    line = _line("b", "c", "a")
    line[1][1].passed_over = 3
    chosen = pick(line, "a", None, NOW, BOUND)
    assert (chosen.index, chosen.passed) == (1, (0,))


def test_a_worker_looks_only_so_far_ahead_and_never_at_what_it_cannot_draw():
    assert pick(_line(*["b"] * 10, "a"), "a", None, NOW, BOUND).index == 0
    assert pick(_line(*["b"] * 9, "a"), "a", None, NOW, BOUND).index == 9
    has = frozenset({"a", "c"})
    chosen = pick(_line("b", "c", "a"), "a", has, NOW, BOUND)
    assert (chosen.index, chosen.passed) == (2, (1,)), "b is not its to pass over"
    assert pick(_line("b"), "a", has, NOW, BOUND) is None


def test_a_job_it_cannot_draw_counts_against_how_far_a_worker_looks():
    has = frozenset({"a"})
    # Ten jobs it cannot draw fill what it looks at: it takes nothing now.
    assert pick(_line(*["b"] * 10, "a"), "a", has, NOW, BOUND) is None
    assert pick(_line(*["b"] * 9, "a"), "a", has, NOW, BOUND).index == 9


def test_a_worker_with_nothing_near_the_head_draws_once_the_head_moves_to_its_jobs():
    window = Bound(max_wait=60, max_passes=3, lookahead=2)
    line = [Waiting(f"s{n}", "s") for n in range(1, 4)] + [Waiting("p1", "p"), Waiting("s4", "s")]
    gpus = [
        Gpu("gpu-a", loaded="s", models=frozenset({"s", "p"})),
        Gpu("gpu-b", loaded="p", models=frozenset({"p"})),
    ]
    planned = plan(line, gpus, NOW, 1.0, window)
    # gpu-b sees only s2, s3 at first; once gpu-a takes s2, p1 is near the head.
    assert planned.order == ["s1", "s2", "p1", "s3", "s4"]
    assert planned.ready_in["p1"] == 2.0


def test_the_plan_batches_models_within_the_bound_and_counts_switches():
    line = [Waiting(f"j{n}", "ab"[n % 2]) for n in range(8)]  # a b a b a b a b
    gpu = Gpu("gpu", loaded="a", free_in=1.0, switch_seconds=3.0)
    planned = plan(line, [gpu], NOW, 1.0, BOUND)
    assert planned.order == ["j0", "j2", "j4", "j6", "j1", "j3", "j5", "j7"]
    # j1 was passed over three times (j2, j4, j6): then it had to go.
    assert planned.ready_in["j6"] == 5.0
    assert planned.ready_in["j1"] == 9.0, "one switch of 3 s"
    assert planned.ready_in["j7"] == 12.0
    line = [Waiting(f"j{n}", "ab"[n % 2]) for n in range(12)]
    order = plan(line, [Gpu("gpu", loaded="a")], NOW, 1.0, BOUND).order
    assert order[:5] == ["j0", "j2", "j4", "j6", "j1"], "j1 waits three passes, no more"


def test_the_plan_gives_each_worker_its_own_model():
    line = [Waiting(f"j{n}", "ab"[n % 2]) for n in range(6)]
    gpus = [Gpu("gpu-a", loaded="a"), Gpu("gpu-b", loaded="b")]
    planned = plan(line, gpus, NOW, 1.0, BOUND)
    assert planned.order == ["j0", "j1", "j2", "j3", "j4", "j5"]
    assert planned.ready_in == {f"j{n}": 1.0 + n // 2 for n in range(6)}, "no switches"


pytestmark = pytest.mark.django_db(transaction=True)


def _worker(forge: ForgeSimulator, worker_id: str) -> Worker:
    worker = Worker(forge.url, worker_id=worker_id)
    workers.register(worker_id, forge.url)
    worker.read_checkpoints()
    return worker


def _started_order() -> list[str]:
    return list(
        ImageJob.objects.exclude(started_at=None)
        .order_by("started_at")
        .values_list("prompt", flat=True)
    )


def test_positions_shown_are_the_order_drawn_and_a_passed_job_waits_no_more_than_the_bound(
    alice, bob, forge, settings
):
    settings.MAMI_MODEL_AFFINITY_MAX_PASSES = 2
    worker = _worker(forge, "gpu-0")
    assert worker.gpu.loaded == "mami-sim"
    alice_talk, bob_talk = make_conversation(alice), make_conversation(bob)
    # Fair order: photo-1, sim-1, photo-2, sim-2, sim-3, sim-4.
    request_picture(alice_talk, "photo-1", steps=2, model="mami-photo")
    request_picture(alice_talk, "photo-2", steps=2, model="mami-photo")
    for n in range(1, 5):
        request_picture(bob_talk, f"sim-{n}", steps=2, model="mami-sim")
    shown = positions.snapshot().positions
    by_place = sorted(ImageJob.objects.all(), key=lambda job: shown[job.id.hex])
    expected = ["sim-1", "sim-2", "photo-1", "photo-2", "sim-3", "sim-4"]
    assert [job.prompt for job in by_place] == expected
    while worker.step():
        pass
    assert _started_order() == expected
    photo_1 = ImageJob.objects.get(prompt="photo-1")
    assert photo_1.passed_over == 2, "passed over twice, then taken"
    assert sim_control(forge)["stats"]["switches"] == 2
    assert set(ImageJob.objects.values_list("status", flat=True)) == {Status.COMPLETE}


def test_a_job_passed_over_for_longer_than_the_wait_bound_is_taken_next(alice, bob, forge):
    worker = _worker(forge, "gpu-0")
    request_picture(make_conversation(alice), "photo", steps=2, model="mami-photo")
    bob_talk = make_conversation(bob)
    for n in range(1, 4):
        request_picture(bob_talk, f"sim-{n}", steps=2, model="mami-sim")
    assert worker.step()
    assert _started_order() == ["sim-1"]
    photo = ImageJob.objects.get(prompt="photo")
    assert photo.passed_over == 1
    # A minute later (the default bound), it is next whatever is loaded.
    ImageJob.objects.filter(pk=photo.pk).update(
        first_passed_at=timezone.now() - timedelta(seconds=61)
    )
    assert positions.snapshot().position(photo.id) == 1
    assert worker.step()
    assert _started_order() == ["sim-1", "photo"]


@pytest.fixture
def second_forge():
    yield from serving(ForgeSimulator(seconds_per_step=0.01))


def test_two_workers_with_different_models_loaded_each_draw_their_own(
    alice, bob, forge, second_forge
):
    sim_control(second_forge, loaded="mami-photo")
    alice_talk, bob_talk = make_conversation(alice), make_conversation(bob)
    for n in range(1, 5):
        request_picture(alice_talk, f"photo-{n}", steps=3, model="mami-photo")
        request_picture(bob_talk, f"sim-{n}", steps=3, model="mami-sim")
    # Both Forges have every model. Taking turns, as two GPUs of the same
    # speed do (run by threads, one that starts late finds the other's
    # model alone at the head, and rightly draws it rather than idle).
    gpus = [_worker(forge, "gpu-sim"), _worker(second_forge, "gpu-photo")]
    while any([gpu.step() for gpu in gpus]):
        pass
    drawn = dict(ImageJob.objects.values_list("prompt", "worker_id"))
    assert drawn == {
        **{f"photo-{n}": "gpu-photo" for n in range(1, 5)},
        **{f"sim-{n}": "gpu-sim" for n in range(1, 5)},
    }
    assert sim_control(forge)["stats"]["switches"] == 0
    assert sim_control(second_forge)["stats"]["switches"] == 0
    assert set(ImageJob.objects.values_list("status", flat=True)) == {Status.COMPLETE}


def test_eta_counts_the_switch_a_worker_has_learned(alice, forge, settings):
    settings.MAMI_MODEL_SWITCH_SECONDS = 7.0
    sim_control(forge, switch_seconds=0.3)
    worker = _worker(forge, "gpu-0")
    talk = make_conversation(alice)
    sim_job = request_picture(talk, "sim", steps=2, model="mami-sim")
    photo = request_picture(talk, "photo", steps=2, model="mami-photo")
    snapshot = positions.snapshot()
    average = snapshot.average_seconds
    assert snapshot.eta_seconds(sim_job.id) == pytest.approx(average)
    assert snapshot.eta_seconds(photo.id) == pytest.approx(2 * average + 7.0)
    for prompt, model in (("s1", "mami-sim"), ("p1", "mami-photo"), ("s2", "mami-sim")):
        request_picture(talk, prompt, steps=2, model=model)
    while worker.step():
        pass
    learned = worker.gpu.switch_seconds
    assert learned is not None
    assert 0.15 < learned < 1.0
    registry_row = workers.live_workers()[0]
    assert registry_row.switch_seconds == pytest.approx(learned)
    assert registry_row.loaded_checkpoint == worker.gpu.loaded


@pytest.fixture
def photo_only_forge():
    photo = find(DEFAULT_CHECKPOINTS, "mami-photo")
    assert photo is not None
    yield from serving(ForgeSimulator(seconds_per_step=0.01, checkpoints=(photo,)))


def test_positions_shown_are_the_order_drawn_by_two_workers_holding_different_models(
    alice, forge, photo_only_forge, settings
):
    settings.MAMI_MODEL_AFFINITY_LOOKAHEAD = 2
    settings.MAMI_MODEL_SWITCH_SECONDS = 0
    talk = make_conversation(alice)
    for prompt, model in (
        ("s1", "mami-sim"),
        ("s2", "mami-sim"),
        ("s3", "mami-sim"),
        ("p1", "mami-photo"),
        ("s4", "mami-sim"),
        ("p2", "mami-photo"),
    ):
        request_picture(talk, prompt, steps=2, model=model)
    # Drawn in turns, the one free first first (equal pictures, no switch
    # time): gpu-a has every model and mami-sim loaded; gpu-b only mami-photo.
    gpus = [_worker(forge, "gpu-a"), _worker(photo_only_forge, "gpu-b")]
    shown = positions.snapshot().positions
    promised = sorted(ImageJob.objects.all(), key=lambda job: shown[job.id.hex])
    worked = True
    while worked:
        worked = False
        for worker in gpus:
            worked = worker.step() or worked
    assert _started_order() == [job.prompt for job in promised]
    assert _started_order() == ["s1", "s2", "p1", "s3", "p2", "s4"]
    drew = dict(ImageJob.objects.values_list("prompt", "worker_id"))
    assert {drew["p1"], drew["p2"]} == {"gpu-b"}


def test_a_worker_that_can_draw_nothing_near_the_head_does_not_spin(alice, forge, settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from imagejobs.transitions import do_claim_next

    settings.MAMI_MODEL_AFFINITY_LOOKAHEAD = 3
    talk = make_conversation(alice)
    for n in range(4):
        request_picture(talk, f"s{n}", steps=2, model="mami-sim")
    with CaptureQueriesContext(connection) as queries:
        assert do_claim_next("gpu-b", loaded="mami-photo", models=frozenset({"mami-photo"})) is None
    assert len(queries) < 10, f"{len(queries)} queries for one claim"
    assert set(ImageJob.objects.values_list("status", flat=True)) == {Status.QUEUED}


def test_a_new_cards_eta_is_the_one_the_queues_refresh_shows(alice, forge, settings):
    settings.MAMI_MODEL_SWITCH_SECONDS = 7.0
    _worker(forge, "gpu-0")  # mami-sim loaded
    job = request_picture(make_conversation(alice), "photo", steps=2, model="mami-photo")
    alone = positions.snapshot(only=[job])
    everything = positions.snapshot()
    assert alone.eta_seconds(job.id) == pytest.approx(everything.eta_seconds(job.id))
    assert alone.eta_seconds(job.id) == pytest.approx(alone.average_seconds + 7.0), "a switch"
    assert alone.position(job.id) == everything.position(job.id) == 1

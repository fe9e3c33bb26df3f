"""The failure model, driven by the simulator's knobs over real HTTP: every
failure ends in a state and words a user understands, in English and
Turkish, and the next job then runs."""

import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from django.utils import translation

from imagejobs import positions
from imagejobs.cards import render_card
from imagejobs.models import ImageJob, Status, WorkerState
from imagejobs.worker import Worker
from simulators.forge import ForgeSimulator
from tests.helpers import make_conversation, request_picture, sim_control, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = {
    "forge_out_of_memory": (
        "The GPU ran out of memory for this picture. Try a smaller size or try again.",
        "GPU bu resim için bellek yetersizliğine düştü. Daha küçük bir boyut deneyin ya da "
        "tekrar deneyin.",
    ),
    "forge_error": (
        "An unknown error occurred. Please try again.",
        "Bilinmeyen bir hata oluştu. Lütfen tekrar deneyin.",
    ),
    "invalid_request": (
        "The image service refused the parameters of this request. Change them and try again.",
        "Görüntü servisi bu isteğin parametrelerini reddetti. Parametreleri değiştirip tekrar "
        "deneyin.",
    ),
    "forge_unreachable": (
        "Could not connect to the Forge API. Please tell your system administrator.",
        "Forge API bağlantı hatası. Lütfen sistem yöneticisine bildirin.",
    ),
    "forge_timeout": (
        "The Forge API timed out (0.5s). Please try again.",
        "Forge API zaman aşımına uğradı (0.5s). Lütfen tekrar deneyin.",
    ),
    "stuck": (
        "The operation timed out (Stuck Job Guard). Please try again.",
        "İşlem zaman aşımına uğradı (Stuck Job Guard). Lütfen tekrar deneyin.",
    ),
}
UNAVAILABLE = (
    "The image service is unavailable right now.",
    "Görüntü servisi şu anda kullanılamıyor.",
)


@pytest.fixture(autouse=True)
def fast_failures(settings):
    settings.FORGE_RETRY_BACKOFF = [0.05, 0.1, 0.2]
    settings.FORGE_TIMEOUT = 0.5
    settings.MAMI_CIRCUIT_OPEN_SECONDS = 1.0
    settings.MAMI_STUCK_AFTER_SECONDS = 1.0
    settings.MAMI_SWEEP_INTERVAL = 0.2
    settings.MAMI_WORKER_HEARTBEAT_SECONDS = 0.1


def card_in(language: str, job: ImageJob) -> str:
    job.refresh_from_db()
    with translation.override(language):
        return render_card(job, positions.snapshot())


def assert_error_card(job: ImageJob, code: str) -> None:
    job.refresh_from_db()
    assert job.status == Status.ERROR
    assert job.error_code == code
    english, turkish = MESSAGES[code]
    assert english in card_in("en", job)
    assert turkish in card_in("tr", job)
    assert job.error_detail not in card_in("en", job)


@pytest.fixture
def running_worker(forge) -> Iterator[Callable[..., Worker]]:
    """Start Worker.run() in a thread (sweeps and all); stopped at teardown."""
    started: list[tuple[Worker, threading.Thread]] = []

    def start(url: str | None = None, worker_id: str = "gpu-test") -> Worker:
        worker = Worker(url or forge.url, worker_id=worker_id, pipelined=True)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        started.append((worker, thread))
        return worker

    yield start
    for worker, thread in started:
        worker.stop.set()
        thread.join(timeout=15)
        assert not thread.is_alive(), "a worker did not stop within 15 s"


@pytest.mark.parametrize(
    ("faults", "code", "attempts", "detail"),
    [
        (["oom"] * 3, "forge_out_of_memory", 3, "CUDA out of memory"),
        (["http500"] * 3, "forge_error", 3, "Internal Server Error"),
        (["http422"], "invalid_request", 1, "HTTP 422"),
        (["drop"] * 3, "forge_unreachable", 3, "RemoteProtocolError"),
        (["hang"] * 3, "forge_timeout", 3, "no answer within 0.5s"),
    ],
)
def test_each_failure_knob_ends_in_error_with_its_words_and_the_next_job_runs(
    alice, forge, faults, code, attempts, detail
):
    conversation = make_conversation(alice)
    failing = request_picture(conversation, "doomed fox", steps=6)
    following = request_picture(conversation, "lucky fox", steps=6)
    sim_control(forge, next=faults)
    worker = Worker(forge.url, worker_id="gpu-test")
    assert worker.step()
    assert_error_card(failing, code)
    assert failing.attempts == attempts
    assert detail in failing.error_detail
    assert worker.step()
    following.refresh_from_db()
    assert following.status == Status.COMPLETE
    assert following.attempts == 1
    # Each retry is in the job's log for staff.
    assert failing.transitions.filter(reason__startswith="attempt").count() == attempts - 1


def test_a_transient_failure_is_retried_and_the_job_completes(alice, forge):
    job = request_picture(make_conversation(alice), "a red fox", steps=4)
    sim_control(forge, next=["http500", "drop"])
    Worker(forge.url, worker_id="gpu-test").step()
    job.refresh_from_db()
    assert job.status == Status.COMPLETE
    assert job.attempts == 3
    assert sim_control(forge)["stats"]["completed"] == 1


def test_a_hung_forge_is_interrupted_so_the_next_job_gets_the_gpu(alice, forge):
    conversation = make_conversation(alice)
    hung = request_picture(conversation, "hung fox", steps=4)
    following = request_picture(conversation, "next fox", steps=4)
    sim_control(forge, next=["hang"] * 3)
    worker = Worker(forge.url, worker_id="gpu-test")
    started = time.monotonic()
    worker.step()
    worker.step()
    assert_error_card(hung, "forge_timeout")
    following.refresh_from_db()
    assert following.status == Status.COMPLETE
    # 3 timeouts of 0.5 s plus backoff, not a GPU held forever.
    assert time.monotonic() - started < 10


def test_a_slow_call_is_logged_as_a_warning_with_the_job_id(alice, forge, settings, caplog):
    settings.FORGE_SLOW_CALL_SECONDS = 0.2
    forge.seconds_per_step = 0.05
    job = request_picture(make_conversation(alice), "slow fox", steps=6)
    sim_control(forge, next=["slow"])
    with caplog.at_level(logging.WARNING, logger="imagejobs.worker"):
        Worker(forge.url, worker_id="gpu-test").step()
    job.refresh_from_db()
    assert job.status == Status.COMPLETE
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(job.id) in message and "held the GPU" in message for message in warnings)


def test_a_frozen_forge_meets_the_stuck_job_guard_and_the_queue_goes_on(
    alice, forge, settings, running_worker
):
    settings.FORGE_TIMEOUT = 30.0  # the guard, not the client timeout, must end it
    conversation = make_conversation(alice)
    frozen = request_picture(conversation, "frozen fox", steps=6)
    sim_control(forge, next=["hang"], progress_stalled=True)
    running_worker()
    wait_for(lambda: ImageJob.objects.get(pk=frozen.pk).status == Status.ERROR)
    assert_error_card(frozen, "stuck")
    assert "no heartbeat since" in frozen.error_detail
    sim_control(forge, progress_stalled=False)
    following = request_picture(conversation, "thawed fox", steps=4)
    wait_for(lambda: ImageJob.objects.get(pk=following.pk).status == Status.COMPLETE)


def test_the_stuck_guard_runs_as_a_command_too(alice, settings):
    from django.core.management import call_command
    from django.utils import timezone

    from imagejobs.transitions import do_claim_next

    job = request_picture(make_conversation(alice), "abandoned fox")
    do_claim_next("gpu-gone")
    ImageJob.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timezone.timedelta(seconds=5)
    )
    call_command("sweepjobs")
    assert_error_card(job, "stuck")


def test_an_outage_holds_the_queue_and_it_drains_when_forge_is_back(alice, running_worker):
    """Forge down longer than the breaker window: no job fails, the cards say
    the service is unavailable, and everything completes once it is back."""
    sim = ForgeSimulator(seconds_per_step=0.01).start()
    port = sim.port
    sim.stop()
    conversation = make_conversation(alice)
    jobs = [request_picture(conversation, f"patient fox {n}", steps=3) for n in range(3)]
    running_worker(sim.url, worker_id="gpu-outage")

    wait_for(lambda: WorkerState.objects.filter(pk="gpu-outage", circuit="open").exists())
    wait_for(lambda: all(j.status == Status.QUEUED for j in ImageJob.objects.all()))
    snapshot = positions.snapshot()
    assert snapshot.unavailable_until is not None
    for job in jobs:
        assert UNAVAILABLE[0] in card_in("en", job)
        assert UNAVAILABLE[1] in card_in("tr", job)
    # Held past the 1 s window: the half-open probe fails and re-opens it.
    time.sleep(2.5)
    assert not ImageJob.objects.filter(status=Status.ERROR).exists()
    probes = jobs[0].transitions.filter(reason__startswith="Forge unavailable").count()
    assert probes == 1, "the job went back to the head once; probes don't claim jobs"

    revived = ForgeSimulator(port=port, seconds_per_step=0.01).start()
    try:
        wait_for(lambda: ImageJob.objects.filter(status=Status.COMPLETE).count() == 3, timeout=15)
    finally:
        revived.stop()
    assert not ImageJob.objects.filter(status=Status.ERROR).exists()
    # The job that met the outage first kept its place at the head.
    order = list(ImageJob.objects.order_by("started_at").values_list("id", flat=True))
    assert order[0] == jobs[0].id
    assert WorkerState.objects.get(pk="gpu-outage").circuit == "closed"


def test_no_retry_queues_behind_an_abandoned_request(alice, forge, settings):
    """Forge freezes inside a job (an interrupt can't reach it) longer than
    the client waits: the worker does not send another request until Forge
    is idle again, so when Forge recovers it draws no picture for nobody."""
    settings.FORGE_TIMEOUT = 0.5
    settings.FORGE_RETRY_BACKOFF = [0.05]
    forge.seconds_per_step = 0.01
    job = request_picture(make_conversation(alice), "frozen fox", steps=4)
    sim_control(forge, next=["freeze"])
    thaw = threading.Timer(2.0, lambda: sim_control(forge, thaw=True))
    thaw.start()
    try:
        Worker(forge.url, worker_id="gpu-test").step()
    finally:
        thaw.cancel()
    job.refresh_from_db()
    assert job.status == Status.COMPLETE
    assert job.attempts == 2
    # Give a queued, abandoned request the time to be drawn: there is none.
    time.sleep(0.5)
    stats = sim_control(forge)["stats"]
    assert stats["txt2img_requests"] == 2, "one timed-out call, one that drew the picture"
    assert stats["max_concurrent_requests"] == 1


def test_a_frozen_forge_restarted_draws_the_next_picture_and_nothing_for_nobody(
    alice, forge, settings
):
    """Forge freezes inside a job, the client gives up, and Forge is then
    restarted: the picture is drawn once Forge is back, and the request
    given up on is never drawn."""
    settings.FORGE_TIMEOUT = 0.5
    settings.FORGE_RETRY_BACKOFF = [0.05]
    settings.MAMI_CIRCUIT_OPEN_SECONDS = 0.2
    forge.seconds_per_step = 0.01
    job = request_picture(make_conversation(alice), "frozen owl", steps=4)
    sim_control(forge, next=["freeze"])

    def restart() -> None:
        forge.stop()
        time.sleep(0.5)
        forge.start()

    restarter = threading.Timer(1.5, restart)
    restarter.start()
    worker = Worker(forge.url, worker_id="gpu-test")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        worker.step()
        job.refresh_from_db()
        if job.status in (Status.COMPLETE, Status.ERROR):
            break
        time.sleep(0.05)
    restarter.join()
    assert job.status == Status.COMPLETE
    stats = sim_control(forge)["stats"]
    assert stats["completed"] == 1, "drawn once, after the restart"
    assert stats["max_concurrent_requests"] == 1

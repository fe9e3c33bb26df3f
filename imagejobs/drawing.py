"""One job drawn on Forge, followed: the txt2img call on its own thread,
and on the worker's thread the polls of progress that push the card,
write the heartbeat, keep live previews, claim the next job ahead and
stop the call when the job is canceled, taken away or the worker stops."""

import logging
import threading
import time
from functools import partial

from django.conf import settings

from mami.db_outage import OUTAGE_ERRORS, database, drop_connection

from . import aftercommit, broadcast, previews, tracing
from .bookkeeping import Bookkeeping
from .claim_ahead import ClaimAhead
from .failures import Verdict
from .forge import ForgeClient, ForgeError, Txt2ImgResult
from .models import ImageJob, Status
from .transitions import do_cancel, do_progress, do_requeue

logger = logging.getLogger(__name__)

# The job's heartbeat (its progress row) is written at least this often
# while Forge answers, even when progress stands still (model loading
# shows 1% for minutes). Not the worker's own heartbeat
# (MAMI_WORKER_HEARTBEAT_SECONDS); the stuck guard must exceed it.
JOB_HEARTBEAT_SECONDS = 5.0


class Abandoned(Exception):
    """The job left this worker's hands while Forge drew it."""


def txt2img_payload(job: ImageJob) -> dict[str, object]:
    payload: dict[str, object] = {
        "prompt": job.prompt,
        **job.generation_parameters(),
        "batch_size": 1,
        "n_iter": 1,
        "send_images": True,
        "save_images": False,
    }
    overrides = previews.forge_settings(job.steps)
    if job.model:
        # Per request, never through POST /options (that would change the
        # model for every user of this Forge). Not put back afterwards: the
        # weights stay loaded for the next picture that wants them.
        overrides["sd_model_checkpoint"] = job.model
        payload["override_settings_restore_afterwards"] = False
    if overrides:
        payload["override_settings"] = overrides
    return payload


def read_verdict(job: ImageJob, worker_id: str) -> Verdict:
    """Is the job still this worker's to draw?"""
    row = (
        ImageJob.objects.filter(pk=job.pk)
        .values("status", "worker_id", "cancel_requested_at")
        .first()
    )
    if row is None or row["status"] != Status.PROCESSING or row["worker_id"] != worker_id:
        return Verdict.GONE
    if row["cancel_requested_at"] is not None:
        return Verdict.CANCEL
    return Verdict.CONTINUE


class Call:
    """One txt2img call, made on a thread of its own."""

    def __init__(self) -> None:
        self.value: Txt2ImgResult | None = None
        self.error: BaseException | None = None
        self.finished = threading.Event()
        # Forge answered 200 (pipelined), or the call finished.
        self.answered = threading.Event()
        # From the request until Forge answered.
        self.seconds = 0.0

    def result(self) -> Txt2ImgResult:
        """The parsed answer, once read; raises the call's failure."""
        self.finished.wait()
        if self.error is not None:
            raise self.error
        assert self.value is not None
        return self.value


class Drawing:
    """One run of `job` on this worker's Forge (each attempt a `Call`)."""

    def __init__(
        self,
        job: ImageJob,
        *,
        forge: ForgeClient,
        worker_id: str,
        stop: threading.Event,
        bookkeeping: Bookkeeping,
        ahead: ClaimAhead,
    ) -> None:
        self.job = job
        self.forge = forge
        self.worker_id = worker_id
        self.stop = stop
        self.bookkeeping = bookkeeping
        self.ahead = ahead
        self._preview_seen = ""
        job.preview_key = None  # a new run: its previews start afresh

    def attempt(self) -> Call:
        """Run txt2img on its own (daemon) thread while following progress
        here; a daemon thread because a hung Forge must not keep a stopping
        worker alive.

        Raises the call's failure, or `Abandoned`. Pipelined, returns as
        soon as Forge answers 200 (the picture is drawn), while the call's
        thread still reads and parses the answer: the next claim overlaps
        that."""
        call = Call()
        payload = txt2img_payload(self.job)
        bookkeeping = self.bookkeeping

        def sent() -> None:
            tracing.tracer.mark("sent")
            bookkeeping.release()

        def answered(status: int) -> None:
            tracing.tracer.mark("answered")
            if status == 200 and bookkeeping.pipelined:
                bookkeeping.hold(True)
                call.answered.set()
                # The answer's body waits in the socket until the next
                # request is out: reading and parsing it now would slow
                # the claim (one interpreter lock for both threads).
                bookkeeping.wait_gpu_fed()

        def run() -> None:
            try:
                # Bookkeeping goes on once the request is sent.
                call.value = self.forge.txt2img(payload, on_sent=sent, on_answer=answered)
            except BaseException as exc:
                call.error = exc
            finally:
                call.finished.set()
                call.answered.set()

        started = time.monotonic()
        threading.Thread(target=run, name=f"txt2img-{self.job.id}", daemon=True).start()
        try:
            self._follow(call.answered, started)
        finally:
            elapsed = call.seconds = time.monotonic() - started
            if elapsed > settings.FORGE_SLOW_CALL_SECONDS:
                logger.warning(
                    "job %s: Forge call held the GPU for %.1fs (limit %gs)",
                    self.job.id,
                    elapsed,
                    settings.FORGE_SLOW_CALL_SECONDS,
                )
        if call.finished.is_set() and call.error is not None:
            raise call.error
        return call

    def _follow(self, answered: threading.Event, started: float) -> None:
        """Poll progress until Forge answers; push every change, write at
        most once per MAMI_PROGRESS_WRITE_INTERVAL (that write is also the
        job's heartbeat). Stop early, interrupting Forge, when the job is
        canceled, taken away (stuck guard, recovery) or the worker stops."""
        job = self.job
        poll_interval = settings.FORGE_PROGRESS_INTERVAL
        last_write = time.monotonic()
        last_preview = 0.0
        warned_slow = False
        may_claim_ahead = self.bookkeeping.pipelined and self.ahead.job is None
        # Polls keep their rate whatever a poll's own work takes.
        next_poll = started + poll_interval
        while not answered.wait(max(next_poll - time.monotonic(), 0.0)):
            next_poll = max(next_poll + poll_interval, time.monotonic())
            # The database away: Forge draws on, the card waits, and the
            # picture is kept when Forge answers (`Finisher`, `spool`).
            try:
                self._check_still_ours()
                now = time.monotonic()
                if self.ahead.held_too_long():
                    self.ahead.give_back("the picture before it took longer than Forge expected")
                    may_claim_ahead = False
                if not warned_slow and now - started > settings.FORGE_SLOW_CALL_SECONDS:
                    warned_slow = True
                    logger.warning(
                        "job %s: Forge call has held the GPU for more than %gs",
                        job.id,
                        settings.FORGE_SLOW_CALL_SECONDS,
                    )
                with_image = (
                    previews.enabled() and now - last_preview >= settings.MAMI_PREVIEW_INTERVAL
                )
                try:
                    with tracing.tracer.span("progress poll"):
                        progress = self.forge.progress(with_image=with_image)
                except ForgeError as exc:
                    # No answer, no heartbeat: the stuck guard sees a frozen Forge.
                    logger.debug("job %s: progress poll failed: %s", job.id, exc)
                    continue
                changed = previewing = False
                if with_image:
                    last_preview = now
                    if progress.active and progress.current_image:
                        previewing = self._take_preview(progress.current_image)
                nearly_done = progress.progress > 0 and self.ahead.due(progress.eta_relative)
                if may_claim_ahead and progress.active and nearly_done:
                    self.ahead.claim(after=job)
                    may_claim_ahead = self.ahead.job is None
                if progress.active:
                    percent = max(0, min(int(progress.progress * 100), 99))
                    if percent > job.progress:
                        job.progress = percent
                        job.eta_seconds = round(progress.eta_relative, 1)
                        changed = True
                interval = (
                    settings.MAMI_PROGRESS_WRITE_INTERVAL if changed else JOB_HEARTBEAT_SECONDS
                )
                if now - last_write >= interval:
                    with tracing.tracer.span("progress written"):
                        written = do_progress(
                            job.id,
                            progress=job.progress,
                            eta_seconds=job.eta_seconds,
                            worker_id=self.worker_id,
                        )
                    if written:
                        job.version += 1
                    last_write = now
                elif changed and not previewing:
                    # Else the preview's push carries this progress too.
                    broadcast.job_progress(job)
            except OUTAGE_ERRORS as exc:
                drop_connection()
                database.failed(f"following job {job.id}", exc)

    def _check_still_ours(self) -> None:
        """Raise `Abandoned` (Forge interrupted) if the worker stops, or the
        job was canceled or taken away."""
        job = self.job
        if self.stop.is_set():
            interrupt_quietly(self.forge, self.worker_id)
            # Both go before everything queued, in their order.
            self.ahead.give_back("worker stopping")
            do_requeue(job.id, reason="worker stopping", worker_id=self.worker_id)
            raise Abandoned
        with tracing.tracer.span("verdict read"):
            verdict = read_verdict(job, self.worker_id)
        if verdict is not Verdict.CONTINUE:
            interrupt_quietly(self.forge, self.worker_id)
            if verdict is Verdict.CANCEL:
                do_cancel(job.id, worker_id=self.worker_id, allowed_from=[Status.PROCESSING])
            raise Abandoned

    def _take_preview(self, encoded: str) -> bool:
        """Keep a new live preview for the card (not the one already shown:
        Forge repeats it until the next is made). Shrinking and storing it
        is bookkeeping, off the worker's thread: it took 10-20 ms, and an
        answer that came meanwhile kept the GPU waiting for it. True if
        handed over: its push then carries the card's progress as well."""
        seen = previews.fingerprint(encoded)
        if seen == self._preview_seen:
            return False
        self._preview_seen = seen
        self.bookkeeping.note(partial(keep_preview, self.job, encoded))
        return True


def keep_preview(job: ImageJob, encoded: str) -> None:
    with tracing.tracer.span("preview kept"):
        _keep_preview(job, encoded)


def _keep_preview(job: ImageJob, encoded: str) -> None:
    image = previews.shrink(encoded)
    if image is not None:
        # Forge may have answered while this shrank the preview: the
        # claim of the next job must not wait for this write.
        aftercommit.lane.wait_running()
        key = previews.store(job.id, image)
        if key is None:
            return  # the run ended meanwhile
        job.preview_key = key
    broadcast.job_progress(job)


def interrupt_quietly(forge: ForgeClient, worker_id: str) -> None:
    try:
        forge.interrupt()
    except ForgeError as exc:
        logger.info("worker %s: interrupt failed: %s", worker_id, exc)


def settle_forge(forge: ForgeClient, worker_id: str, stop: threading.Event) -> bool:
    """Wait until Forge is idle, interrupting what it runs (one worker per
    Forge: whatever runs there is a request this worker gave up on), so
    that no retry queues behind an abandoned request and a recovering
    Forge draws nothing nobody will receive. False if Forge is still busy
    after FORGE_SETTLE_SECONDS; True if idle or unreachable (a Forge that
    went away draws nothing)."""
    deadline = time.monotonic() + settings.FORGE_SETTLE_SECONDS
    idle_polls = 0
    # Two idle answers in a row: the next abandoned request, if any, had
    # time to take the lock in between.
    while idle_polls < 2:
        try:
            progress = forge.progress()
        except ForgeError:
            return True
        if progress.active:
            idle_polls = 0
            interrupt_quietly(forge, worker_id)
        else:
            idle_polls += 1
        if time.monotonic() > deadline:
            logger.error("worker %s: Forge still busy after a timed-out call", worker_id)
            return False
        if stop.wait(settings.FORGE_PROGRESS_INTERVAL):
            return True
    return True

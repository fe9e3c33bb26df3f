"""The GPU worker: takes queued jobs one at a time and runs them on Forge."""

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import close_old_connections
from django.utils import translation

from . import broadcast
from .errors import ErrorCode, user_message
from .forge import ForgeClient, ForgeError, Txt2ImgResult, image_extension
from .models import ImageJob
from .transitions import do_claim_next, do_complete, do_fail, do_progress

logger = logging.getLogger(__name__)

# A heartbeat is written at least this often even when progress stands still.
HEARTBEAT_SECONDS = 5.0


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def txt2img_payload(job: ImageJob) -> dict[str, object]:
    return {
        "prompt": job.prompt,
        "negative_prompt": job.negative_prompt,
        "steps": job.steps,
        "width": job.width,
        "height": job.height,
        "cfg_scale": job.cfg_scale,
        "sampler_name": job.sampler_name,
        "seed": job.seed,
        "batch_size": 1,
        "n_iter": 1,
        "send_images": True,
        "save_images": False,
    }


class Worker:
    """Processes the queue serially against one Forge server.

    `step()` does one unit of work and says whether there was any, so tests
    drive it directly and `run()` only loops and sleeps.
    """

    def __init__(
        self,
        forge_url: str,
        *,
        worker_id: str | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.worker_id = worker_id or default_worker_id()
        self.forge = ForgeClient(forge_url, timeout=settings.FORGE_TIMEOUT)
        self.stop = stop or threading.Event()
        self.poll_interval = settings.FORGE_PROGRESS_INTERVAL
        self.write_interval = settings.MAMI_PROGRESS_WRITE_INTERVAL

    def run(self) -> None:
        logger.info("worker %s started against %s", self.worker_id, self.forge.base_url)
        try:
            while not self.stop.is_set():
                try:
                    worked = self.step()
                except Exception:
                    # A bug in one step must not kill the GPU box's only worker.
                    logger.exception("worker %s: step failed", self.worker_id)
                    worked = False
                if not worked:
                    self.stop.wait(settings.MAMI_WORKER_IDLE_SLEEP)
        finally:
            self.forge.close()
            close_old_connections()
            logger.info("worker %s stopped", self.worker_id)

    def step(self) -> bool:
        """Claim and run the next job; False if the queue was empty."""
        close_old_connections()
        job = do_claim_next(self.worker_id)
        if job is None:
            return False
        self.process(job)
        return True

    def process(self, job: ImageJob) -> None:
        """1. Start txt2img on its own connection.
        2. Poll /progress while it runs; push every change, write at most
           once per `write_interval` (that write is also the heartbeat).
        3. Store the image and complete the job, or fail it with a readable
           message; the raw error goes to the log and to staff.
        """
        started = time.monotonic()
        try:
            result = self._generate(job)
            self._store(job, result)
        except ForgeError as exc:
            logger.warning("job %s failed: %s", job.id, exc)
            self._fail(job, exc.code, exc.detail)
        except Exception as exc:
            logger.exception("job %s failed unexpectedly", job.id)
            self._fail(job, ErrorCode.UNKNOWN, "".join(traceback.format_exception(exc)))
        logger.info("job %s finished in %.1fs", job.id, time.monotonic() - started)

    def _generate(self, job: ImageJob) -> Txt2ImgResult:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="txt2img") as pool:
            future = pool.submit(self.forge.txt2img, txt2img_payload(job))
            self._follow_progress(job, future)
            return future.result()

    def _follow_progress(self, job: ImageJob, future: Future[Txt2ImgResult]) -> None:
        last_write = time.monotonic()
        while True:
            try:
                future.result(timeout=self.poll_interval)
                return
            except FutureTimeout:
                pass
            except ForgeError:
                return
            try:
                progress = self.forge.progress()
            except ForgeError as exc:
                logger.debug("job %s: progress poll failed: %s", job.id, exc)
                continue
            if not progress.active:
                continue
            percent = max(0, min(int(progress.progress * 100), 99))
            now = time.monotonic()
            changed = percent > job.progress
            if changed:
                job.progress = percent
                job.eta_seconds = round(progress.eta_relative, 1)
            due = now - last_write >= (self.write_interval if changed else HEARTBEAT_SECONDS)
            if due:
                if do_progress(job.id, progress=job.progress, eta_seconds=job.eta_seconds):
                    job.version += 1
                last_write = now
            elif changed:
                broadcast.job_progress(job)

    def _store(self, job: ImageJob, result: Txt2ImgResult) -> None:
        data = result.images[0]
        filename = job.image.field.generate_filename(job, f"{job.id}.{image_extension(data)}")
        name = default_storage.save(filename, ContentFile(data))
        if not do_complete(job.id, image_name=name, seed=result.seed, info=result.info):
            # Canceled (or otherwise finished) while Forge was drawing.
            default_storage.delete(name)

    def _fail(self, job: ImageJob, code: str, detail: str) -> None:
        with translation.override("en"):
            message = user_message(code)
        do_fail(job.id, code=code, user_message=message, detail=detail)

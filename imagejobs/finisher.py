"""The end of a job's life on a worker: its picture stored and the job
completed, or the job failed; when pipelined, on a thread of its own
while the worker's thread has the GPU draw the next one."""

import contextlib
import logging
import queue
import threading
import time
import traceback
import uuid
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import close_old_connections

from mami.db_outage import OUTAGE_ERRORS, database, drop_connection

from . import aftercommit, spool, tracing
from .drawing import Call
from .errors import ErrorCode
from .forge import ForgeError, Txt2ImgResult, image_extension
from .metrics import storage_failures
from .models import ImageJob
from .transitions import do_complete, do_fail, do_note_storage_trouble, do_requeue

logger = logging.getLogger(__name__)


def fail_unexpectedly(job: ImageJob, worker_id: str, exc: BaseException) -> None:
    """A bug, not Forge: the job fails with the traceback for staff."""
    detail = "".join(traceback.format_exception(exc))
    do_fail(job.id, code=ErrorCode.UNKNOWN, detail=detail, worker_id=worker_id)


class Finisher:
    """Pipelined, the job stays processing, held by this worker, until its
    image is stored: a crash in between hands it back to the queue like any
    other job the worker held, and the stuck guard sees its heartbeat. The
    thread waits while the after-commit lane is paused, so it never
    competes with the next claim. Not pipelined, `take` finishes inline."""

    _STOP = object()

    def __init__(self, worker_id: str, *, pipelined: bool) -> None:
        self.worker_id = worker_id
        self.pipelined = pipelined
        # Pictures in the spool: stored while the database was away, or
        # refused by storage (tried again from `_next_storage_try` on).
        self.spooled = False
        self._next_storage_try = 0.0
        # Jobs it could neither finish nor hand back, the database away:
        # the worker hands them back once it returns.
        self.cut_off: list[uuid.UUID] = []
        self._pictures: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def take(self, job: ImageJob, call: Call) -> None:
        if not self.pipelined:
            self.finish(job, call)
            return
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"mami-finisher:{self.worker_id}", daemon=True
            )
            self._thread.start()
        self._pictures.put((job, call))

    def close(self) -> None:
        """Store every picture handed over so far, then stop."""
        if self._thread is not None:
            self._pictures.put(self._STOP)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        try:
            while (item := self._pictures.get()) is not self._STOP:
                job, call = item
                aftercommit.lane.wait_running()
                with tracing.tracer.span("picture stored (finisher)"):
                    try:
                        self.finish(job, call)
                    except Exception:
                        # The thread outlives any one picture's trouble.
                        logger.exception("job %s: finishing failed", job.id)
        finally:
            close_old_connections()

    def finish(self, job: ImageJob, call: Call) -> None:
        """Save the picture and complete the job. A picture storage refuses
        waits in the spool (`_storage_refused`), as one whose job the
        database is not there to complete does; one that cannot be read
        fails the job; one lost on its way after Forge answered is drawn
        again."""
        try:
            try:
                self._store(job, call.result())
            except ForgeError as exc:
                if exc.transient:
                    reason = f"picture lost after Forge answered ({exc.code})"
                    do_requeue(job.id, reason=reason, worker_id=self.worker_id, code=exc.code)
                else:
                    do_fail(job.id, code=exc.code, detail=exc.detail, worker_id=self.worker_id)
        except OUTAGE_ERRORS as exc:
            # With no picture kept: the job stays held by this worker, which
            # hands it back once the database returns.
            drop_connection()
            database.failed(f"finishing job {job.id}", exc)
            self.cut_off.append(job.id)
        except Exception as exc:
            logger.exception("job %s: storing the picture failed", job.id)
            aftercommit.keep_connection_usable()
            fail_unexpectedly(job, self.worker_id, exc)

    def complete_spooled(self) -> None:
        """Finish the jobs of the pictures this worker spooled (at start, and
        on each step while there are any): store the picture if storage
        refused it (every MAMI_STORAGE_RETRY_SECONDS; the job fails after
        MAMI_STORAGE_GIVE_UP_SECONDS), then complete the job. Each stays
        spooled until that is done."""
        pending = False
        try_storage = time.monotonic() >= self._next_storage_try
        if try_storage:
            self._next_storage_try = time.monotonic() + settings.MAMI_STORAGE_RETRY_SECONDS
        for entry in spool.waiting(self.worker_id):
            job_id = uuid.UUID(entry.job_id)
            name = entry.image_name
            if not entry.stored:
                if not try_storage:
                    pending = True
                    continue
                try:
                    name = _save(entry.filename, spool.picture_of(entry))
                except OSError as exc:
                    if time.time() - entry.since < settings.MAMI_STORAGE_GIVE_UP_SECONDS:
                        do_note_storage_trouble(job_id, worker_id=self.worker_id)
                        pending = True
                        continue
                    logger.error("job %s: storage still refuses its picture: %s", job_id, exc)
                    detail = f"storage refused the picture since {entry.since:.0f}: {exc}"
                    do_fail(
                        job_id,
                        code=ErrorCode.STORAGE_FAILED,
                        detail=detail,
                        worker_id=self.worker_id,
                    )
                    spool.forget(entry)
                    continue
                logger.warning("job %s: storage took its picture again", job_id)
            completed = do_complete(
                job_id,
                image_name=name,
                seed=entry.seed,
                info=entry.info,
                worker_id=self.worker_id,
            )
            if not completed:
                # Canceled or taken away meanwhile.
                default_storage.delete(name)
            spool.forget(entry)
            outcome = "stored" if completed else "dropped (the job was taken away)"
            logger.info("job %s: spooled picture %s", job_id, outcome)
        self.spooled = pending

    def _store(self, job: ImageJob, result: Txt2ImgResult) -> None:
        drawn = result.info.get("sd_model_name")
        if job.model and drawn != job.model:
            # Forge drops a checkpoint it does not know without a word and
            # draws with the one it has: that picture is not what was asked.
            detail = f"asked for model {job.model!r}, Forge drew with {drawn!r}"
            do_fail(job.id, code=ErrorCode.WRONG_MODEL, detail=detail, worker_id=self.worker_id)
            return
        data = result.picture()
        filename = job.image.field.generate_filename(job, f"{job.id}.{image_extension(data)}")
        try:
            name = _save(filename, data)
        except OSError as exc:
            self._storage_refused(job, result, filename, data, exc)
            return
        try:
            completed = do_complete(
                job.id,
                image_name=name,
                seed=result.seed,
                info=result.info,
                worker_id=self.worker_id,
            )
        except OUTAGE_ERRORS as exc:
            drop_connection()
            database.failed(f"completing job {job.id}", exc)
            spool.keep(spool.Spooled(str(job.id), name, result.seed, result.info, self.worker_id))
            self.spooled = True
            return
        if not completed:
            # Canceled or taken away while Forge was drawing.
            default_storage.delete(name)

    def _storage_refused(
        self, job: ImageJob, result: Txt2ImgResult, filename: str, data: bytes, exc: OSError
    ) -> None:
        """Storage is full or read-only: keep the picture in the spool, say
        so on the card, and store it once storage takes it again."""
        storage_failures.inc()
        logger.error("job %s: storage refused its picture (%s); it is tried again", job.id, exc)
        entry = spool.Spooled(
            str(job.id),
            "",
            result.seed,
            result.info,
            self.worker_id,
            picture=f"{job.id}.{image_extension(data)}",
            filename=filename,
            since=time.time(),
        )
        try:
            spool.keep(entry, data)
        except OSError as spool_exc:
            # Nowhere to keep it either: it is drawn again when it can be.
            logger.error("job %s: the spool refused it too (%s)", job.id, spool_exc)
            do_requeue(job.id, reason="picture could not be stored", worker_id=self.worker_id)
            return
        do_note_storage_trouble(job.id, worker_id=self.worker_id)
        self.spooled = True
        self._next_storage_try = time.monotonic() + settings.MAMI_STORAGE_RETRY_SECONDS


def _save(filename: str, data: bytes) -> str:
    """Store `data`; on failure (OSError) leave no partial file behind."""
    name = default_storage.get_available_name(filename)
    try:
        return default_storage.save(name, ContentFile(data))
    except OSError:
        with contextlib.suppress(OSError):
            default_storage.delete(name)
        raise

"""The job the GPU draws next, claimed while it still draws the current
one, so that no claim stands between two pictures (pipelined only)."""

import logging
import time

from django.conf import settings

from . import aftercommit, tracing
from .gpu import Gpu
from .models import ImageJob
from .transitions import do_claim_next, do_requeue

logger = logging.getLogger(__name__)

# Claimed once Forge says the picture has this little left. Short, because
# a job's card says it is drawing from its claim.
CLAIM_AHEAD_SECONDS = 0.5
# A job claimed ahead goes back to the head of the queue if the picture
# before it outlasts this (a Forge stuck after its last step), long before
# the stuck guard would take a job that never started for a stuck one.
CLAIM_AHEAD_HOLD_SECONDS = 30.0


class ClaimAhead:
    def __init__(self, worker_id: str, gpu: Gpu) -> None:
        self.worker_id = worker_id
        self.gpu = gpu
        self.job: ImageJob | None = None
        self._claimed_at = 0.0

    @staticmethod
    def due(seconds_left: float) -> bool:
        return seconds_left <= CLAIM_AHEAD_SECONDS

    def claim(self, after: ImageJob) -> None:
        """Claim the job to draw after `after` (which is nearly done). An
        idle worker of the same queue would have claimed it already (woken
        by its commit)."""
        try:
            with tracing.tracer.span("claim"):
                self.job = do_claim_next(
                    self.worker_id, loaded=self.gpu.loaded_after(after), models=self.gpu.models
                )
        except Exception:
            # Not the drawing job's failure: the claim is made between the
            # two pictures instead.
            logger.exception("worker %s: claiming ahead failed", self.worker_id)
            aftercommit.keep_connection_usable()
        self._claimed_at = time.monotonic()

    def take(self) -> ImageJob | None:
        job, self.job = self.job, None
        return job

    def held_too_long(self) -> bool:
        hold = min(CLAIM_AHEAD_HOLD_SECONDS, settings.MAMI_STUCK_AFTER_SECONDS / 4)
        return self.job is not None and time.monotonic() - self._claimed_at > hold

    def give_back(self, reason: str, code: str = "") -> None:
        """Hand back the job claimed ahead, if any (it has not reached Forge)."""
        if (job := self.take()) is not None:
            do_requeue(job.id, reason=reason, worker_id=self.worker_id, code=code)

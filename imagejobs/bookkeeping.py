"""Where a worker's bookkeeping runs: off the GPU's path when pipelined,
inline when not.

Pipelined (`runworker`, the embedded worker), whatever may wait (the
admin's overview, a learned switch time, a live preview) goes to the
after-commit lane, and the lane is held from a picture's answer until the
next request is sent, so the claim in between runs alone and the GPU
waits as little as possible. Not pipelined (tests driving `Worker.step`),
it runs inline, so a step has done all its work when it returns.
"""

import threading
from collections.abc import Callable

from . import aftercommit


class Bookkeeping:
    def __init__(self, *, pipelined: bool) -> None:
        self.pipelined = pipelined
        self._holding = False
        self._lock = threading.Lock()
        # Set while nothing holds the lane: the GPU has its next request.
        self._gpu_fed = threading.Event()
        self._gpu_fed.set()

    def note(self, task: Callable[[], object]) -> None:
        """Run `task` off the GPU's path, in order (inline if not pipelined)."""
        if self.pipelined:
            aftercommit.lane.submit(task)
        else:
            task()

    def hold(self, hold: bool) -> None:
        """Hold (or release) the process's bookkeeping; called from the
        worker's thread and its txt2img thread, so idempotent."""
        if not self.pipelined:
            return
        with self._lock:
            if hold == self._holding:
                return
            self._holding = hold
            if hold:
                self._gpu_fed.clear()
            else:
                self._gpu_fed.set()
        if hold:
            aftercommit.lane.pause()
        else:
            aftercommit.lane.resume()

    def release(self) -> None:
        self.hold(False)

    def wait_gpu_fed(self) -> None:
        """Until the next request is sent (bounded by the lane's longest pause)."""
        self._gpu_fed.wait(aftercommit.MAX_PAUSE_SECONDS)

"""Trace hooks: the moments and spans of a worker's work that the
benchmarks time (`bench/gpu_gap.py --phases`), named here so that they
install a tracer instead of wrapping the worker's private names.

The default tracer does nothing, at the cost of one call per hook.
"""

from contextlib import AbstractContextManager, nullcontext


class Tracer:
    def mark(self, what: str) -> None:
        """A moment: "step", "sent" (a txt2img request is out), "answered"."""

    def span(self, what: str) -> AbstractContextManager[object]:
        """A stretch of work: "claim", "heartbeat", "progress poll",
        "verdict read", "progress written", "preview kept", "picture stored"."""
        return nullcontext()


tracer = Tracer()


def install(new: Tracer) -> None:
    global tracer
    tracer = new

"""The circuit breaker that holds the queue while Forge is down.

After `threshold` consecutive failed Forge calls the circuit opens: the
worker claims nothing for `open_seconds`, so queued jobs wait instead of
failing one after another. Then one probe (half open) decides: success
closes the circuit, failure opens it for another window.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .models import Circuit


@dataclass
class CircuitBreaker:
    threshold: int
    open_seconds: float
    clock: Callable[[], float] = field(default=time.monotonic)
    state: Circuit = Circuit.CLOSED
    failures: int = 0
    open_until: float = 0.0

    def record_success(self) -> bool:
        """A Forge call worked; True if that changed the state."""
        changed = self.state != Circuit.CLOSED
        self.state = Circuit.CLOSED
        self.failures = 0
        return changed

    def record_failure(self) -> bool:
        """A Forge call failed; True if that opened the circuit."""
        self.failures += 1
        if self.state == Circuit.HALF_OPEN or self.failures >= self.threshold:
            self.state = Circuit.OPEN
            self.open_until = self.clock() + self.open_seconds
            return True
        return False

    @property
    def is_open(self) -> bool:
        return self.state == Circuit.OPEN

    def seconds_until_probe(self) -> float:
        return max(self.open_until - self.clock(), 0.0) if self.is_open else 0.0

    def ready_to_probe(self) -> bool:
        """Open and its window is over: the next call is the probe."""
        if self.is_open and self.clock() >= self.open_until:
            self.state = Circuit.HALF_OPEN
            return True
        return False

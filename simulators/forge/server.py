"""A Forge stand-in for tests, benchmarks and the embedded default without
FORGE_URL: a real HTTP server speaking the /sdapi/v1 subset mami uses
(docs/forge-api.md), with knobs to make it fail like Forge does.

Like Forge, generations are serialized by one FIFO lock while /progress,
/interrupt, /options and /sd-models answer at once.
"""

import base64
import json
import random
import threading
import time
from collections import deque
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from ..server import SimServer
from .checkpoints import DEFAULT_CHECKPOINTS, Checkpoint, find
from .drawing import draw_picture, draw_preview
from .protocol import (
    FAULTS,
    OUT_OF_MEMORY,
    infotext,
    side,
    txt2img_info,
)
from .routes import ForgeHandler, drop_connection
from .state import FifoLock, SimState, SimStats


class ForgeSimulator(SimServer):
    name = "forgesim"
    handler = ForgeHandler

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seconds_per_step: float = 0.1,
        checkpoints: tuple[Checkpoint, ...] = DEFAULT_CHECKPOINTS,
        switch_seconds: float = 0.0,
    ) -> None:
        super().__init__(host, port)
        self.seconds_per_step = seconds_per_step
        self.checkpoints = tuple(checkpoints)
        # The weights on the GPU, and what loading others costs.
        self.loaded = self.checkpoints[0]
        self.switch_seconds = self._initial_switch_seconds = switch_seconds
        self.options: dict[str, Any] = {
            "sd_model_checkpoint": self.loaded.title,
            "samples_format": "png",
            "live_previews_enable": True,
            "show_progress_every_n_steps": 10,
            "forge_preset": "sd",
        }
        self._generation_lock = FifoLock()
        self._interrupt = threading.Event()
        self._thaw = threading.Event()
        self.state = SimState()
        self.stats = SimStats()
        self.next_faults: deque[str] = deque()
        self.fault_mode: str | None = None
        self.progress_stalled = False
        # (job_timestamp, preview step) -> base64 PNG: drawn once, polled often.
        self._preview: tuple[tuple[str, int], str] | None = None

    def stopping(self) -> None:
        self._interrupt.set()
        self._thaw.set()

    def reset(self) -> None:
        with self._lock:
            self.next_faults.clear()
            self.fault_mode = None
            self.progress_stalled = False
            self.stats = SimStats()
            self.loaded = self.checkpoints[0]
            self.options["sd_model_checkpoint"] = self.loaded.title
            self.switch_seconds = self._initial_switch_seconds

    # -- the API, one method per route ------------------------------------

    def progress(self, *, with_image: bool = False) -> dict[str, Any]:
        """Forge's /progress; `with_image` is `skip_current_image=false`."""
        current_image = self._current_preview() if with_image else None
        with self._lock:
            state = self.state
            if state.job_count == 0:
                progress, eta = 0.0, 0.0
            else:
                count = max(state.job_count, 1)
                steps = max(state.sampling_steps, 1)
                progress = min(
                    1.0, 0.01 + state.job_no / count + (state.sampling_step / steps) / count
                )
                elapsed = time.monotonic() - state.started
                eta = elapsed / progress - elapsed
            return {
                "progress": progress,
                "eta_relative": eta,
                "state": {
                    "skipped": False,
                    "interrupted": state.interrupted,
                    "stopping_generation": False,
                    "job": state.job,
                    "job_count": state.job_count,
                    "job_timestamp": state.job_timestamp,
                    "job_no": state.job_no,
                    "sampling_step": state.sampling_step,
                    "sampling_steps": state.sampling_steps,
                },
                "current_image": current_image if state.job_count else None,
                "textinfo": None,
            }

    def _current_preview(self) -> str | None:
        """The latest live preview, as Forge keeps it: made every
        `show_progress_every_n_steps` steps of a running job, else none."""
        with self._lock:
            state = self.state
            if state.job_count == 0 or state.preview_every <= 0:
                return None
            made_at = (state.sampling_step // state.preview_every) * state.preview_every
            if made_at == 0:
                return None
            key = (state.job_timestamp + str(state.started), made_at)
            if self._preview is not None and self._preview[0] == key:
                return self._preview[1]
            prompt, seed, width, height = state.preview_of
            done = made_at / max(state.sampling_steps, 1)
        image = base64.b64encode(draw_preview(prompt, seed, width, height, done)).decode("ascii")
        with self._lock:
            self._preview = (key, image)
        return image

    def interrupt(self) -> None:
        with self._lock:
            if self.state.job_count != 0:
                self.state.interrupted = True
                self._interrupt.set()

    def txt2img(
        self, params: dict[str, Any], handler: "BaseHTTPRequestHandler"
    ) -> tuple[int, Any] | None:
        """Run one generation; None means the connection was dropped."""
        with self._lock:
            self.stats.txt2img_requests += 1
            self.stats.in_flight_requests += 1
            self.stats.max_concurrent_requests = max(
                self.stats.max_concurrent_requests, self.stats.in_flight_requests
            )
            fault = self.next_faults.popleft() if self.next_faults else self.fault_mode
        try:
            return self._serialized(params, fault, handler)
        finally:
            with self._lock:
                self.stats.in_flight_requests -= 1

    def _serialized(
        self, params: dict[str, Any], fault: str | None, handler: "BaseHTTPRequestHandler"
    ) -> tuple[int, Any] | None:
        if fault == "http422":
            self._count_failure()
            return 422, {"detail": "Script 'simulated-refusal' not found"}
        with self._generation_lock:
            with self._lock:
                self.stats.in_flight_generations += 1
                self.stats.max_concurrent_generations = max(
                    self.stats.max_concurrent_generations, self.stats.in_flight_generations
                )
            started = time.time()
            try:
                return self._generate(params, fault, handler)
            finally:
                with self._lock:
                    self.stats.generations.append(
                        (params.get("prompt") or "", started, time.time())
                    )
                    self.stats.in_flight_generations -= 1
                    self.state.job = ""
                    self.state.job_count = 0

    def record_call(self, received: float, answered: float) -> None:
        with self._lock:
            self.stats.calls.append((received, answered))

    def count_options_write(self) -> None:
        with self._lock:
            self.stats.options_writes += 1

    def _count_failure(self) -> None:
        with self._lock:
            self.stats.failed += 1

    def _generate(
        self, params: dict[str, Any], fault: str | None, handler: BaseHTTPRequestHandler
    ) -> tuple[int, Any] | None:
        steps = max(1, params.get("steps") or 50)
        images_wanted = max(1, params.get("batch_size") or 1) * max(1, params.get("n_iter") or 1)
        seed = params.get("seed")
        if seed is None or seed == -1:
            seed = random.randrange(4294967294)
        self._interrupt.clear()
        overrides = params.get("override_settings") or {}
        options = {**self.options, **overrides}
        preview_every = 0
        if options.get("live_previews_enable"):
            preview_every = max(0, int(options.get("show_progress_every_n_steps") or 0))
        with self._lock:
            self.state = SimState(
                job="scripts_txt2img",
                job_count=1,
                job_no=0,
                job_timestamp=datetime.now(UTC).strftime("%Y%m%d%H%M%S"),
                sampling_step=0,
                sampling_steps=steps,
                interrupted=False,
                started=time.monotonic(),
                preview_every=preview_every,
                preview_of=(
                    params.get("prompt") or "",
                    seed,
                    side(params.get("width")),
                    side(params.get("height")),
                ),
            )
        # Loading another checkpoint happens inside the job, as in Forge:
        # /progress shows it started, at 1 %.
        checkpoint = self._load_for(overrides, params)
        per_step = self.seconds_per_step * (10 if fault == "slow" else 1)
        if fault == "hang":
            # Forge stuck inside a job: no step ever finishes.
            self._interrupt.wait(timeout=3600)
            if self._stopping.is_set():
                return None
        if fault == "freeze":
            # Stuck where an interrupt can't reach (loading a model, a
            # wedged driver) until thawed over /_sim; requests behind it
            # wait on the lock, as in Forge.
            self._thaw.wait(timeout=3600)
            self._thaw.clear()
            if self._stopping.is_set():
                return None
        for step in range(steps):
            if self._interrupt.wait(timeout=per_step):
                break
            with self._lock:
                self.state.sampling_step = min(step + 1, steps - 1)
            if fault == "drop" and step + 1 >= steps // 2:
                self._count_failure()
                drop_connection(handler)
                return None
        if fault == "oom":
            self._count_failure()
            return 500, OUT_OF_MEMORY
        if fault == "http500":
            self._count_failure()
            return 500, "Internal Server Error"
        interrupted = self.state.interrupted
        return 200, self._result(params, seed, steps, images_wanted, interrupted, checkpoint)

    def _load_for(self, overrides: dict[str, Any], params: dict[str, Any]) -> Checkpoint:
        """The checkpoint this request draws with, loaded first if it is not
        the one on the GPU (charging `switch_seconds`). An alias the
        simulator does not know is dropped silently, as Forge does: the
        configured model draws."""
        asked = find(self.checkpoints, overrides.get("sd_model_checkpoint"))
        wanted = asked or find(self.checkpoints, self.options.get("sd_model_checkpoint"))
        wanted = wanted or self.loaded
        if wanted != self.loaded:
            # Loading weights is not interruptible; only a stop ends it.
            self._stopping.wait(self.switch_seconds)
            with self._lock:
                self.loaded = wanted
                self.stats.switches += 1
        if asked is not None and params.get("override_settings_restore_afterwards") is False:
            with self._lock:
                self.options["sd_model_checkpoint"] = asked.title
        return wanted

    def _result(
        self,
        params: dict[str, Any],
        seed: int,
        steps: int,
        count: int,
        interrupted: bool,
        checkpoint: Checkpoint,
    ) -> dict[str, Any]:
        prompt = params.get("prompt") or ""
        width, height = side(params.get("width")), side(params.get("height"))
        seeds = [seed + index for index in range(count)]
        infotexts = [infotext(params, s, steps, checkpoint) for s in seeds]
        images = [
            base64.b64encode(draw_picture(prompt, s, width, height, text)).decode("ascii")
            for s, text in zip(seeds, infotexts, strict=True)
        ]
        info = txt2img_info(
            params,
            seeds=seeds,
            steps=steps,
            infotexts=infotexts,
            checkpoint=checkpoint,
            job_timestamp=self.state.job_timestamp,
        )
        with self._lock:
            if interrupted:
                self.stats.interrupted += 1
            else:
                self.stats.completed += 1
                self.stats.prompts_completed.append(prompt)
                self.stats.models_drawn.append(checkpoint.model_name)
        return {"images": images, "parameters": params, "info": json.dumps(info)}

    def set_knobs(self, body: dict[str, Any]) -> None:
        for fault in body.get("next", []):
            if fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}; known: {sorted(FAULTS)}")
            self.next_faults.append(fault)
        if "mode" in body:
            if body["mode"] is not None and body["mode"] not in FAULTS:
                raise ValueError(f"unknown fault {body['mode']!r}")
            self.fault_mode = body["mode"]
        if "progress_stalled" in body:
            self.progress_stalled = bool(body["progress_stalled"])
        if "seconds_per_step" in body:
            self.seconds_per_step = float(body["seconds_per_step"])
        if "switch_seconds" in body:
            self.switch_seconds = float(body["switch_seconds"])
        if "loaded" in body:
            loaded = find(self.checkpoints, body["loaded"])
            if loaded is None:
                raise ValueError(f"unknown checkpoint {body['loaded']!r}")
            self.loaded = loaded
            self.options["sd_model_checkpoint"] = loaded.title
        if body.get("thaw"):
            self._thaw.set()

    def reset_stats(self) -> None:
        self.stats = SimStats()

    def report(self) -> dict[str, Any]:
        return {
            "seconds_per_step": self.seconds_per_step,
            "next_faults": list(self.next_faults),
            "mode": self.fault_mode,
            "progress_stalled": self.progress_stalled,
            "loaded": self.loaded.title,
            "switch_seconds": self.switch_seconds,
            "stats": {
                "txt2img_requests": self.stats.txt2img_requests,
                "completed": self.stats.completed,
                "interrupted": self.stats.interrupted,
                "failed": self.stats.failed,
                "in_flight_generations": self.stats.in_flight_generations,
                "max_concurrent_generations": self.stats.max_concurrent_generations,
                "max_concurrent_requests": self.stats.max_concurrent_requests,
                "prompts_completed": list(self.stats.prompts_completed),
                "generations": list(self.stats.generations),
                "calls": list(self.stats.calls),
                "switches": self.stats.switches,
                "options_writes": self.stats.options_writes,
                "models_drawn": list(self.stats.models_drawn),
            },
        }

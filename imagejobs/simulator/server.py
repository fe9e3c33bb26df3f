"""A Forge stand-in for tests, benchmarks and the embedded default without
FORGE_URL: a real HTTP server speaking the /sdapi/v1 subset mami uses
(docs/forge-api.md), with knobs to make it fail like Forge does.

Like Forge, generations are serialized by one FIFO lock while /progress,
/interrupt, /options and /sd-models answer at once.
"""

import base64
import contextlib
import json
import logging
import random
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError

from .checkpoints import DEFAULT_CHECKPOINTS, Checkpoint, find
from .drawing import draw_picture, draw_preview

logger = logging.getLogger(__name__)

VERSION = "f2.0.1v1.10.1-mami-simulator"
SAMPLERS = ["DPM++ 2M", "Euler a", "Euler", "DDIM", "UniPC"]

# What a failure knob makes txt2img do.
FAULTS = frozenset({"oom", "http500", "http422", "hang", "freeze", "drop", "slow"})


class Txt2ImgRequest(BaseModel):
    """Forge's txt2img request model, as far as the simulator reads it.

    Like Forge's (pydantic v2, lax): every field optional and nullable,
    numeric strings coerced, anything else answered with pydantic's own 422
    error items; other keys are echoed back as given.
    """

    model_config = ConfigDict(extra="allow")

    prompt: str | None = ""
    negative_prompt: str | None = ""
    steps: int | None = 50
    width: int | None = 512
    height: int | None = 512
    cfg_scale: float | None = 7.0
    distilled_cfg_scale: float | None = 3.5
    sampler_name: str | None = None
    sampler_index: str | None = "Euler"
    scheduler: str | None = None
    seed: int | None = -1
    subseed: int | None = -1
    batch_size: int | None = 1
    n_iter: int | None = 1
    send_images: bool | None = True
    save_images: bool | None = False
    override_settings: dict[str, Any] | None = None


class FifoLock:
    """Serves waiters in arrival order, like Forge's queue_lock."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._serving = 0

    def __enter__(self) -> None:
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            while ticket != self._serving:
                self._cond.wait()

    def __exit__(self, *exc_info: object) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()


@dataclass
class SimState:
    job: str = ""
    job_count: int = 0
    job_no: int = 0
    job_timestamp: str = "0"
    sampling_step: int = 0
    sampling_steps: int = 0
    interrupted: bool = False
    started: float = 0.0
    # Live previews: every n steps (0: off), of what.
    preview_every: int = 0
    preview_of: tuple[str, int, int, int] = ("", 0, 64, 64)


@dataclass
class SimStats:
    txt2img_requests: int = 0
    completed: int = 0
    interrupted: int = 0
    failed: int = 0
    in_flight_generations: int = 0
    max_concurrent_generations: int = 0
    # txt2img requests open at once, waiting on the lock or generating: more
    # than one means two clients were driving this Forge.
    in_flight_requests: int = 0
    max_concurrent_requests: int = 0
    prompts_completed: list[str] = field(default_factory=list)
    # (prompt, started, ended) of every generation, in wall-clock seconds.
    generations: list[tuple[str, float, float]] = field(default_factory=list)
    # (received, answered) of every txt2img call, in wall-clock seconds:
    # from its request line read to its answer handed to the network. The time
    # between one answer and the next request is the client's own.
    calls: list[tuple[float, float]] = field(default_factory=list)
    # Checkpoint loads a request caused, and POST /options calls (a client
    # that changes the model for every user of this Forge makes those).
    switches: int = 0
    options_writes: int = 0
    # The model each completed picture was drawn with, in order.
    models_drawn: list[str] = field(default_factory=list)


class _ValidationError(Exception):
    """Answered as FastAPI does: 422 {"detail": [pydantic error items]}."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("validation")
        self.errors = errors


def _parse_txt2img(raw: bytes) -> dict[str, Any]:
    try:
        request = Txt2ImgRequest.model_validate_json(raw)
    except PydanticValidationError as exc:
        # FastAPI puts the request body first in every error's location.
        raise _ValidationError(
            [{**error, "loc": ["body", *error["loc"]]} for error in json.loads(exc.json())]
        ) from None
    return request.model_dump()


class ForgeSimulator:
    """Start with `start()`; `url` is then the base URL to give the client."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seconds_per_step: float = 0.1,
        checkpoints: tuple[Checkpoint, ...] = DEFAULT_CHECKPOINTS,
        switch_seconds: float = 0.0,
    ) -> None:
        self.host = host
        self.port = port
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
        self._lock = threading.Lock()
        self._interrupt = threading.Event()
        self._thaw = threading.Event()
        self._stopping = threading.Event()
        self.state = SimState()
        self.stats = SimStats()
        self.next_faults: deque[str] = deque()
        self.fault_mode: str | None = None
        self.progress_stalled = False
        # (job_timestamp, preview step) -> base64 PNG: drawn once, polled often.
        self._preview: tuple[tuple[str, int], str] | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "ForgeSimulator":
        self._stopping.clear()
        server = ThreadingHTTPServer((self.host, self.port), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, name=f"forgesim:{self.port}", daemon=True
        )
        self._thread.start()
        logger.info("Forge simulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop listening; connections are refused until `start()` again."""
        self._stopping.set()
        self._interrupt.set()
        self._thaw.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)

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
                    max(64, min(params.get("width") or 512, 2048)),
                    max(64, min(params.get("height") or 512, 2048)),
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
                _drop(handler)
                return None
        if fault == "oom":
            self._count_failure()
            return 500, {
                "error": "OutOfMemoryError",
                "detail": "",
                "body": "",
                "message": "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total capacity; 5.12 GiB already allocated)",
            }
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
        width = max(64, min(params.get("width") or 512, 2048))
        height = max(64, min(params.get("height") or 512, 2048))
        sampler = params.get("sampler_name") or params.get("sampler_index") or "Euler"
        seeds = [seed + index for index in range(count)]
        infotexts = [
            f"{prompt}\nSteps: {steps}, Sampler: {sampler}, CFG scale: {params.get('cfg_scale')}, "
            f"Seed: {s}, Size: {width}x{height}, Model hash: {checkpoint.short_hash}, "
            f"Model: {checkpoint.model_name}, "
            f"Version: {VERSION}"
            for s in seeds
        ]
        images = [
            base64.b64encode(draw_picture(prompt, s, width, height, text)).decode("ascii")
            for s, text in zip(seeds, infotexts, strict=True)
        ]
        info = {
            "prompt": prompt,
            "all_prompts": [prompt] * count,
            "negative_prompt": params.get("negative_prompt") or "",
            "all_negative_prompts": [params.get("negative_prompt") or ""] * count,
            "seed": seed,
            "all_seeds": seeds,
            "subseed": seed,
            "all_subseeds": seeds,
            "subseed_strength": 0,
            "width": width,
            "height": height,
            "sampler_name": sampler,
            "cfg_scale": params.get("cfg_scale"),
            "steps": steps,
            "batch_size": params.get("batch_size") or 1,
            "restore_faces": False,
            "sd_model_name": checkpoint.model_name,
            "sd_model_hash": checkpoint.short_hash,
            "seed_resize_from_w": -1,
            "seed_resize_from_h": -1,
            "extra_generation_params": {},
            "index_of_first_image": 0,
            "infotexts": infotexts,
            "styles": [],
            "job_timestamp": self.state.job_timestamp,
            "clip_skip": 1,
            "is_using_inpainting_conditioning": False,
            "version": VERSION,
        }
        with self._lock:
            if interrupted:
                self.stats.interrupted += 1
            else:
                self.stats.completed += 1
                self.stats.prompts_completed.append(prompt)
                self.stats.models_drawn.append(checkpoint.model_name)
        return {"images": images, "parameters": params, "info": json.dumps(info)}

    def control(self, body: dict[str, Any]) -> dict[str, Any]:
        """Test hook: queue faults, set a fault mode, stall /progress, time steps."""
        with self._lock:
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
            if body.get("reset_stats"):
                self.stats = SimStats()
        return self.describe()

    def describe(self) -> dict[str, Any]:
        with self._lock:
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


def _drop(handler: BaseHTTPRequestHandler) -> None:
    """Cut the connection without an answer, as a crashed server would."""
    handler.close_connection = True
    with contextlib.suppress(OSError):
        handler.connection.shutdown(socket.SHUT_RDWR)


def _handler_for(sim: ForgeSimulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "uvicorn"
        # As uvicorn does: without it an answer written in two sends waits
        # for the client's delayed ACK (40 ms) on a kept-alive connection.
        disable_nagle_algorithm = True

        def parse_request(self) -> bool:
            # The request line is in: what follows is the simulator's work.
            self.arrived = time.time()
            return super().parse_request()

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("forgesim %s", format % args)

        def _send(self, status: int, body: Any) -> None:
            if isinstance(body, str) and status >= 500:
                payload, ctype = body.encode(), "text/plain; charset=utf-8"
            else:
                payload, ctype = json.dumps(body).encode(), "application/json"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            # Headers and body in one send, as an ASGI server answers.
            self._headers_buffer.append(b"\r\n")
            self._headers_buffer.append(payload)
            self.flush_headers()

        def _raw_body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _json_body(self, raw: bytes) -> Any:
            if not raw:
                return None
            try:
                return json.loads(raw)
            except ValueError as exc:
                raise _ValidationError(
                    [
                        {
                            "type": "json_invalid",
                            "loc": ["body", 0],
                            "msg": "JSON decode error",
                            "input": {},
                            "ctx": {"error": str(exc)},
                        }
                    ]
                ) from None

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/sdapi/v1/progress":
                if sim.progress_stalled:
                    # Like a Forge whose thread pool is exhausted: no answer.
                    sim._stopping.wait(timeout=3600)
                    _drop(self)
                    return
                query = parse_qs(self.path.partition("?")[2])
                skip = query.get("skip_current_image", ["false"])[-1].lower() != "false"
                self._send(200, sim.progress(with_image=not skip))
            elif path == "/sdapi/v1/sd-models":
                self._send(200, [c.listing() for c in sim.checkpoints])
            elif path == "/sdapi/v1/options":
                self._send(200, sim.options)
            elif path == "/sdapi/v1/samplers":
                self._send(200, [{"name": name, "aliases": [], "options": {}} for name in SAMPLERS])
            elif path == "/_sim":
                self._send(200, sim.describe())
            else:
                self._send(404, {"detail": "Not Found"})

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            try:
                raw = self._raw_body()
                if path == "/sdapi/v1/txt2img":
                    if not raw:
                        raise _ValidationError(
                            [
                                {
                                    "type": "missing",
                                    "loc": ["body"],
                                    "msg": "Field required",
                                    "input": None,
                                }
                            ]
                        )
                    self._json_body(raw)  # bad JSON is FastAPI's json_invalid
                    result = sim.txt2img(_parse_txt2img(raw), self)
                    if result is not None:
                        self._send(*result)
                        sim.record_call(self.arrived, time.time())
                elif path == "/sdapi/v1/interrupt":
                    sim.interrupt()
                    self._send(200, {})
                elif path == "/sdapi/v1/skip":
                    sim.interrupt()
                    self._send(200, None)
                elif path == "/sdapi/v1/options":
                    body = self._json_body(raw)
                    sim.count_options_write()
                    if isinstance(body, dict):
                        checkpoint = body.get("sd_model_checkpoint")
                        if checkpoint is not None and find(sim.checkpoints, checkpoint) is None:
                            self._send(
                                500,
                                {
                                    "error": "RuntimeError",
                                    "detail": "",
                                    "body": "",
                                    "message": f"model {checkpoint!r} not found",
                                },
                            )
                            return
                        sim.options.update(body)
                    self._send(200, None)
                elif path == "/_sim":
                    try:
                        self._send(200, sim.control(self._json_body(raw) or {}))
                    except ValueError as exc:
                        self._send(400, {"detail": str(exc)})
                else:
                    self._send(404, {"detail": "Not Found"})
            except _ValidationError as exc:
                self._send(422, {"detail": exc.errors})

    return Handler

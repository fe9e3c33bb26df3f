"""The simulated Forge's routes: /sdapi/v1 as Forge answers it, with
FastAPI's validation errors (the simulator's knobs are at /_sim)."""

import contextlib
import json
import socket
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs

from ..server import SimHandler
from .checkpoints import find
from .protocol import SAMPLERS, ValidationError, parse_txt2img

if TYPE_CHECKING:
    from .server import ForgeSimulator


class ForgeHandler(SimHandler):
    server_version = "uvicorn"
    # As uvicorn does: without it an answer written in two sends waits
    # for the client's delayed ACK (40 ms) on a kept-alive connection.
    disable_nagle_algorithm = True
    sim: ClassVar["ForgeSimulator"]

    def parse_request(self) -> bool:
        # The request line is in: what follows is the simulator's work.
        self.arrived = time.time()
        return super().parse_request()

    def send(self, status: int, body: Any) -> None:
        if isinstance(body, str) and status >= 500:
            self.send_body(status, body.encode(), "text/plain; charset=utf-8")
        else:
            self.send_json(status, body)

    def get(self, route: str) -> None:
        sim = self.sim
        if route == "/sdapi/v1/progress":
            if sim.progress_stalled:
                # Like a Forge whose thread pool is exhausted: no answer.
                sim._stopping.wait(timeout=3600)
                drop_connection(self)
                return
            query = parse_qs(self.path.partition("?")[2])
            skip = query.get("skip_current_image", ["false"])[-1].lower() != "false"
            self.send(200, sim.progress(with_image=not skip))
        elif route == "/sdapi/v1/sd-models":
            self.send(200, [c.listing() for c in sim.checkpoints])
        elif route == "/sdapi/v1/options":
            self.send(200, sim.options)
        elif route == "/sdapi/v1/samplers":
            self.send(200, [{"name": name, "aliases": [], "options": {}} for name in SAMPLERS])
        else:
            self.send(404, {"detail": "Not Found"})

    def post(self, route: str) -> None:
        try:
            raw = self.raw_body()
            if route == "/sdapi/v1/txt2img":
                self._txt2img(raw)
            elif route in ("/sdapi/v1/interrupt", "/sdapi/v1/skip"):
                self.sim.interrupt()
                self.send(200, {} if route.endswith("interrupt") else None)
            elif route == "/sdapi/v1/options":
                self._options(self._json_body(raw))
            else:
                self.send(404, {"detail": "Not Found"})
        except ValidationError as exc:
            self.send(422, {"detail": exc.errors})

    def _txt2img(self, raw: bytes) -> None:
        if not raw:
            missing = {"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}
            raise ValidationError([missing])
        self._json_body(raw)  # bad JSON is FastAPI's json_invalid
        result = self.sim.txt2img(parse_txt2img(raw), self)
        if result is not None:
            self.send(*result)
            self.sim.record_call(self.arrived, time.time())

    def _options(self, body: Any) -> None:
        self.sim.count_options_write()
        if isinstance(body, dict):
            checkpoint = body.get("sd_model_checkpoint")
            if checkpoint is not None and find(self.sim.checkpoints, checkpoint) is None:
                message = f"model {checkpoint!r} not found"
                error = {"error": "RuntimeError", "detail": "", "body": "", "message": message}
                self.send(500, error)
                return
            self.sim.options.update(body)
        self.send(200, None)

    def _json_body(self, raw: bytes) -> Any:
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            error = {
                "type": "json_invalid",
                "loc": ["body", 0],
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": str(exc)},
            }
            raise ValidationError([error]) from None


def drop_connection(handler: BaseHTTPRequestHandler) -> None:
    """Cut the connection without an answer, as a crashed server would."""
    handler.close_connection = True
    with contextlib.suppress(OSError):
        handler.connection.shutdown(socket.SHUT_RDWR)

"""The skeleton both simulators share: a threaded HTTP server on its own
thread, started and stopped by its owner, with test knobs at `/_sim`
(GET describes the state, POST changes it, 400 for a bad knob)."""

import json
import logging
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self

logger = logging.getLogger(__name__)

CONTROL_PATH = "/_sim"


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a server stopping, a test's cut link) is
        # routine for a stand-in; anything else is still printed.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class SimHandler(BaseHTTPRequestHandler):
    """Routes `/_sim` to the simulator's knobs and everything else to
    `get` / `post`, which a simulator's handler defines."""

    protocol_version = "HTTP/1.1"
    sim: ClassVar["SimServer"]

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.sim.name, format % args)

    def send_body(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        # Headers and body in one send, as an ASGI server answers.
        self._headers_buffer.append(b"\r\n")  # type: ignore[attr-defined]
        self._headers_buffer.append(payload)  # type: ignore[attr-defined]
        self.flush_headers()

    def send_json(self, status: int, body: Any) -> None:
        self.send_body(status, json.dumps(body, ensure_ascii=False).encode(), "application/json")

    def raw_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    @property
    def route(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/") or "/"

    def do_GET(self) -> None:
        if self.route == CONTROL_PATH:
            self.send_json(200, self.sim.describe())
        else:
            self.get(self.route)

    def do_POST(self) -> None:
        if self.route != CONTROL_PATH:
            self.post(self.route)
            return
        try:
            body = json.loads(self.raw_body() or b"{}")
            self.send_json(200, self.sim.control(body))
        except (TypeError, ValueError) as exc:
            self.send_json(400, self.sim.refusal(str(exc)))

    def get(self, route: str) -> None:
        raise NotImplementedError

    def post(self, route: str) -> None:
        raise NotImplementedError


class SimServer:
    """Start with `start()`; `url` is then the base URL to give a client."""

    name = "simulator"
    handler: type[SimHandler] = SimHandler
    # What follows host:port in the URL a client is given.
    url_path = ""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.url_path}"

    def start(self) -> Self:
        self._stopping.clear()
        bound = type(self.handler.__name__, (self.handler,), {"sim": self})
        server = _QuietServer((self.host, self.port), bound)
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, name=f"{self.name}:{self.port}", daemon=True
        )
        self._thread.start()
        logger.info("%s listening on %s", self.name, self.url)
        return self

    def stop(self) -> None:
        """Stop listening; connections are refused until `start()` again."""
        self._stopping.set()
        self.stopping()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def stopping(self) -> None:
        """Wake whatever waits inside a request (a simulated hang)."""

    def control(self, body: dict[str, Any]) -> dict[str, Any]:
        """Change the knobs `body` names (`reset_stats`: zero the counts);
        the state as `describe` gives it. ValueError or TypeError for a knob
        it does not take."""
        with self._lock:
            self.set_knobs(body)
            if body.get("reset_stats"):
                self.reset_stats()
        return self.describe()

    def describe(self) -> dict[str, Any]:
        """The knobs and the counts, as GET /_sim reports them."""
        with self._lock:
            return self.report()

    def set_knobs(self, body: dict[str, Any]) -> None:
        raise NotImplementedError

    def reset_stats(self) -> None:
        raise NotImplementedError

    def report(self) -> dict[str, Any]:
        raise NotImplementedError

    def refusal(self, message: str) -> Any:
        """The body of the 400 a bad knob gets."""
        return {"detail": message}

    def serve_until_stopped(self) -> None:
        """Serve until SIGTERM or SIGINT (Ctrl+C): for the commands."""
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        stop.wait()
        self.stop()

"""The HTTP side: a threading HTTP/1.1 server, its request handler, and `RocksetEmulator`."""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from . import api
from .errors import CollectionNotFound, error_body, type_for_status
from .faults import Drop, Faults
from .state import Store

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024  # Rockset's Write API limit per request
_TOO_LARGE = f"Request body exceeds {MAX_BODY_BYTES} bytes"


class _BodyError(Exception):
    def __init__(self, status: int, type_: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive handlers must not block stop()

    def __init__(self, address: tuple[str, int], emulator: RocksetEmulator) -> None:
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def connection_count(self) -> int:
        with self._connections_lock:
            return len(self._connections)

    def close_connections(self) -> None:
        """Shut down open keep-alive connections so their handler threads end."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            log.debug("connection from %s ended: %r", client_address, error)
        else:
            log.exception("unhandled error serving %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    server: _Server

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PATCH = do_DELETE = do_PUT = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors (bad request line, ...) as ErrorModel JSON too."""
        self.close_connection = True
        self._send(code, error_body(message or explain or "Bad request", type_for_status(code)))

    def _handle(self) -> None:
        emulator = self.server.emulator
        path = urlsplit(self.path).path
        emulator._begin(self.command, path)
        try:
            self._respond(emulator, path)
        finally:
            emulator._end()

    def _respond(self, emulator: RocksetEmulator, path: str) -> None:
        faults = emulator._faults
        try:
            body = self._read_body()
        except _BodyError as exc:
            self._send(exc.status, error_body(str(exc), exc.type))
            return
        latency = faults.latency
        if latency > 0:
            time.sleep(latency)
        status = faults.take_failure()
        if status is not None:
            message = f"HTTP {status} injected by the emulator"
            self._send(status, error_body(message, type_for_status(status)))
            return
        if not self._authorized(emulator.api_key):
            message = "Missing or invalid API key: send the header 'Authorization: apikey <key>'"
            self._send(401, error_body(message, "AUTHEXCEPTION"))
            return
        drop = faults.take_drop() if api.is_write(self.command, path) else None
        if drop is Drop.BEFORE_APPLY:
            self.close_connection = True  # no response at all: the client sees the connection close
            return
        response = api.dispatch(emulator._store, self.command, path, body)
        if drop is Drop.AFTER_APPLY:
            self.close_connection = True
            return
        self._send(response.status, response.body)

    def _authorized(self, api_key: str) -> bool:
        scheme, _, key = self.headers.get("Authorization", "").strip().partition(" ")
        return scheme.lower() == "apikey" and hmac.compare_digest(
            key.strip().encode(), api_key.encode()
        )

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        header = self.headers.get("Content-Length")
        if header is None:
            return b""
        try:
            length = int(header)
            if length < 0:
                raise ValueError(header)
        except ValueError:
            self.close_connection = True
            raise _BodyError(400, "INVALIDINPUT", f"Invalid Content-Length: {header!r}") from None
        if length > MAX_BODY_BYTES:
            self._discard(length)
            raise _BodyError(413, "CONTENTTOOLARGE", _TOO_LARGE)
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            raise _BodyError(400, "INVALIDINPUT", "Request body is shorter than its Content-Length")
        return body

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise _BodyError(400, "INVALIDINPUT", "Malformed chunked request body") from None
            if size == 0:
                while self.rfile.readline(1024).strip():
                    pass  # trailer headers
                break
            total += size
            if total > MAX_BODY_BYTES:
                self.close_connection = True
                raise _BodyError(413, "CONTENTTOOLARGE", _TOO_LARGE)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)
        return b"".join(chunks)

    def _discard(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                self.close_connection = True
                return
            length -= len(chunk)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)


class RocksetEmulator:
    """A local server speaking the Rockset REST subset that chat histories use.

    ``start()`` binds ``host`` (127.0.0.1) on ``port`` (0: an ephemeral port) and
    serves from daemon threads; it is also a context manager.
    """

    def __init__(
        self,
        api_key: str = "test-key",
        ready_delay: float = 0.0,
        visibility_delay: float = 0.0,
        persist_path: str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        if ready_delay < 0 or visibility_delay < 0:
            raise ValueError("delays must be >= 0")
        self.api_key = api_key
        self._host = host
        self._requested_port = port
        self._visibility_delay = visibility_delay
        self._store = Store(
            ready_delay=ready_delay,
            visibility_delay=visibility_delay,
            persist_path=Path(persist_path) if persist_path is not None else None,
        )
        self._faults = Faults()
        self._requests: list[tuple[str, str]] = []
        self._in_flight = 0
        self._hooks: list[tuple[str, str, Callable[[], object]]] = []
        self._requests_changed = threading.Condition()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ------------------------------------------------------------------

    def start(self) -> RocksetEmulator:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self._store.load()
        server = _Server((self._host, self._requested_port), self)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},  # how fast stop() returns
            name=f"rockset-emulator-{server.server_address[1]}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join()
        self._server = self._thread = None

    def __enter__(self) -> RocksetEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start()")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def client(self, api_key: str | None = None) -> Any:
        """A ``rockset.RocksetClient`` pointed at this emulator (``api_key`` overrides the key).

        Needs the ``rockset`` SDK (``pip install chathistory-rockset-emulator[sdk]``).
        """
        from rockset import Configuration, RocksetClient  # type: ignore[import-untyped]

        configuration = Configuration(api_key=api_key if api_key is not None else self.api_key)
        client = RocksetClient(config=configuration)
        # RocksetClient refuses any host but *.rockset.com; the client keeps this very
        # Configuration, whose public host setter then points it here.
        configuration.host = self.url
        return client

    # ---- observation ----------------------------------------------------------------

    def _begin(self, method: str, path: str) -> None:
        """Log a request as it arrives and run the first hook waiting for it."""
        with self._requests_changed:
            self._requests.append((method, path))
            self._in_flight += 1
            hook = next((h for h in self._hooks if h[0] == method and path.endswith(h[1])), None)
            if hook is not None:
                self._hooks.remove(hook)
        if hook is not None:
            hook[2]()

    def _end(self) -> None:
        with self._requests_changed:
            self._in_flight -= 1
            self._requests_changed.notify_all()

    @property
    def requests(self) -> list[tuple[str, str]]:
        """The request log: ``(method, path)`` of every request received since the last
        :meth:`reset_request_count`, in arrival order, failed and dropped ones included.

        Tests read it to count and check the requests one call makes.
        """
        with self._requests_changed:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        """How many requests the log holds: ``len(requests)``."""
        with self._requests_changed:
            return len(self._requests)

    @property
    def in_flight(self) -> int:
        """How many requests are being handled now (received, not yet answered or dropped)."""
        with self._requests_changed:
            return self._in_flight

    @property
    def open_connections(self) -> int:
        """How many client connections are open now (kept alive between requests or not).

        A connection counts until the server has seen the client close it, so
        tests poll this to check that a client let go of its connections.
        """
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start()")
        return self._server.connection_count()

    def reset_request_count(self) -> None:
        """Empty the request log."""
        with self._requests_changed:
            self._requests.clear()

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no request is being handled, e.g. one a client gave up on (timed out)
        that is still sleeping through the latency and will apply its write afterwards.

        Raises:
            TimeoutError: requests are still in flight after ``timeout`` seconds.
        """
        with self._requests_changed:
            if not self._requests_changed.wait_for(lambda: self._in_flight == 0, timeout):
                raise TimeoutError(f"{self._in_flight} request(s) still in flight "
                                   f"after {timeout}s")

    def before_next(self, method: str, path_suffix: str, action: Callable[[], object]) -> None:
        """Run ``action()`` when the next ``method`` request whose path ends with
        ``path_suffix`` arrives, before anything else happens to it (latency, faults,
        auth, the write itself). Once only.

        Tests use it to act at a precise point of a client's sequence of requests:
        ``before_next("POST", "/offsets/commit", other_client_writes)`` lets another
        client write just before the first fence check, after the writes before it.
        The action runs on the server's request thread; it may send requests itself.
        """
        with self._requests_changed:
            self._hooks.append((method, path_suffix, action))

    def documents(self, workspace: str, collection: str) -> dict[str, dict[str, Any]]:
        """A copy of a collection's documents by ``_id``, including writes not yet visible."""
        try:
            return self._store.snapshot(workspace, collection)
        except CollectionNotFound as exc:
            raise KeyError(exc.message) from None

    # ---- faults and consistency -------------------------------------------------------

    def set_latency(self, seconds: float) -> None:
        """Delay every request by this many seconds."""
        self._faults.set_latency(seconds)

    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer the next n requests (any kind) with this status and an ErrorModel body."""
        self._faults.fail_next(n, status)

    def drop_next(self, n: int, after_apply: bool = False) -> None:
        """Close the next n document writes' connections without a response,
        before applying the write or after applying it."""
        self._faults.drop_next(n, after_apply=after_apply)

    def set_visibility_delay(self, seconds: float) -> None:
        """Writes from now on become visible to queries (and committed) after this delay."""
        if seconds < 0:
            raise ValueError("visibility delay must be >= 0")
        with self._store.lock:
            self._store.visibility_delay = seconds

    def reset(self) -> None:
        """Back to the state just after construction: no collections, faults, hooks or
        request log."""
        self._store.reset(visibility_delay=self._visibility_delay)
        self._faults.reset()
        with self._requests_changed:
            self._requests.clear()
            self._hooks.clear()

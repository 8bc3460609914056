"""The one way a backend's operations run: written once, driven in sync and in async by the core.

A backend writes each operation once, as a generator of *requests* to its
driver: it yields a request (a SQL statement and its parameters, a Redis
command, an HTTP call...), receives the driver's reply, and returns its
result. Work done before the first ``yield`` (checking and encoding the
input) runs before any connection is taken, and an operation that returns
before yielding (``fetch(limit=0)``) takes none. An error the driver raises
is thrown into the operation at its ``yield``: it may answer it (a fallback
request) or let it end the try::

    def _append(self, session_id: str, texts: list[str]) -> Operation[None]:
        yield ("INSERT INTO t (session_id, message) VALUES (?, ?)",
               [(session_id, text) for text in texts])

A small :class:`Driver` says how to reach the store: a connection from the
driver's own sync pool, one from the async pool of the running event loop
(or no native async at all), how to send one request on each, which errors
are transient and how an error reads as a chathistory error.

A :class:`~chathistory.runner.Runner` runs the operations, sync and async,
the same way for every backend: the one retry path
(:func:`~chathistory.retry.retry_transient`, rebuilding the operation on each
try), one async pool per event loop, a WARNING log line per retry and, with
``opentelemetry-api`` installed and a tracer provider set, one span per
operation. A backend class declares its public methods with
:func:`~chathistory.operations.operation`, which adds their async twins (all
these names can be imported from this module)::

    class JsonBackend(BaseBackend):
        def __init__(self, config: Config) -> None:
            super().__init__(config)
            self.runner = Runner(self, JsonDriver(config))

        @operation(write=True)
        def append(self, session_id: str, records: Sequence[Mapping[str, Any]]
                   ) -> Operation[None]:
            texts = [encode_record(record) for record in records]  # before any I/O
            yield ("append", session_id, texts)

        # ... and ``await backend.aappend(...)`` runs the same operation.

The event-loop policy: each event loop that makes an async call gets its own
async pool (:meth:`Driver.open_pool`), on its first call. The pool is closed
in its loop by ``Runner.aclose``, or when the loop shuts down
(``asyncio.run`` finalizes async generators, and one of ours holds the pool);
``Runner.close`` closes the sync pool and asks every running loop to
close its own. A pool whose loop ended without either is dropped
(:meth:`Driver.forget_pool`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeAlias, TypeVar

if TYPE_CHECKING:
    from chathistory.operations import AsyncOperationMethod, OperationMethod, operation
    from chathistory.runner import Runner, package_logger

__all__ = [
    "AsyncOperationMethod",
    "Call",
    "Driver",
    "Operation",
    "OperationMethod",
    "Phase",
    "Runner",
    "failed_while",
    "operation",
    "package_logger",
]

T = TypeVar("T")
Conn = TypeVar("Conn")
AsyncPool = TypeVar("AsyncPool")
AsyncConn = TypeVar("AsyncConn")

Operation: TypeAlias = Generator[Any, Any, T]
"""An operation: yields requests to the driver, receives each reply, returns its result."""

Phase: TypeAlias = Literal["connect", "send", "commit"]
"""Where in its try an error came (:func:`failed_while`)."""


def failed_while(error: BaseException) -> Phase:
    """Where in its try the runner saw ``error``, for :meth:`Driver.is_transient` and
    :meth:`Driver.translate`: ``"connect"`` while getting the connection (nothing of the
    try was sent), ``"commit"`` when the connection's context raised on exit after the
    last reply (with ``call.transaction``, the commit: a write may have been stored),
    else ``"send"``."""
    return getattr(error, "_chathistory_failed_while", "send")


@dataclass(frozen=True, slots=True)
class Call:
    """What the runner tells the driver about the operation it runs.

    Attributes:
        backend: The backend's name, for messages (``"postgres"``).
        operation: The operation's name (``"append"``, ``"create_collection"``...).
        write: Whether it changes the store. A write is retried only when the
            driver says nothing of it ran (see :meth:`Driver.is_transient`).
        transaction: Whether its requests must run in one transaction
            (:meth:`Driver.connection` opens and commits it, or rolls it back).
    """

    backend: str
    operation: str
    write: bool = False
    transaction: bool = False


class Driver(ABC, Generic[Conn, AsyncPool, AsyncConn]):
    """How a backend reaches its store. Subclass it in the backend's ``client.py``.

    The type parameters are the sync connection, the async pool and the async
    connection (``Driver[psycopg.Connection, AsyncConnectionPool, AsyncConnection]``).
    Only :meth:`connection` and :meth:`send` are required. A driver without
    native async leaves :attr:`native_async` false: the runner then runs the
    sync path in a worker thread for async calls.

    Connections come from the driver's own machinery (psycopg_pool, a
    SQLAlchemy engine, redis-py's pools), never from private attributes.
    """

    native_async: bool = False
    """Whether :meth:`open_pool`, :meth:`async_connection` and :meth:`asend` exist."""

    @abstractmethod
    def connection(self, call: Call) -> AbstractContextManager[Conn]:
        """A connection from the sync pool for one try of ``call``, given back on exit.

        With ``call.transaction``, the requests run in one transaction,
        committed when the context exits cleanly and rolled back when it exits
        with an error. Raising here (no connection) is a failure of the try,
        judged by :meth:`is_transient` like any other.
        """

    @abstractmethod
    def send(self, connection: Conn, request: Any) -> Any:
        """Send one request the operation yielded; return the reply the operation receives."""

    async def open_pool(self) -> AsyncPool:
        """A new async pool for the running event loop (or the application's own pool).

        Called once per event loop, on its first async call; runs in that loop.
        """
        raise NotImplementedError(f"{type(self).__name__} has no native async")

    def async_connection(self, pool: AsyncPool, call: Call
                         ) -> AbstractAsyncContextManager[AsyncConn]:
        """:meth:`connection`, from ``pool`` (the running loop's), as an async context."""
        raise NotImplementedError(f"{type(self).__name__} has no native async")

    async def asend(self, connection: AsyncConn, request: Any) -> Any:
        """:meth:`send`, on an async connection."""
        raise NotImplementedError(f"{type(self).__name__} has no native async")

    async def close_pool(self, pool: AsyncPool) -> None:
        """Close a pool :meth:`open_pool` made, in its own loop. Leave an application's open."""

    def forget_pool(self, pool: AsyncPool) -> None:
        """Let go of a pool whose event loop has ended: it can no longer be awaited.

        The default drops it (the garbage collector closes its sockets).
        """

    def is_transient(self, error: BaseException, *, write: bool) -> bool:
        """Whether a try that raised ``error`` may run again.

        For a ``write``, true only when the driver knows nothing of it ran (no
        connection was made, the server rolled it back): a batch must never be
        stored twice. :func:`failed_while` says where in the try ``error`` came.
        The default: nothing is transient.
        """
        return False

    def translate(self, error: BaseException, call: Call) -> BaseException:
        """The chathistory error (from :mod:`chathistory.errors`) for a driver's ``error``.

        Return ``error`` itself for errors that are not the driver's (a
        ``ValueError`` from checking the input); :func:`failed_while` says where in
        the try ``error`` came. The default translates nothing.
        """
        return error

    def close(self) -> None:
        """Close the sync pool the driver made. Idempotent; a later call may reopen it."""


# The runner and the method declarations live in modules of their own; they are
# named here too, so a backend imports everything from chathistory.driver.
_ELSEWHERE = {"Runner": "runner", "package_logger": "runner", "operation": "operations",
              "OperationMethod": "operations", "AsyncOperationMethod": "operations"}


def __getattr__(name: str) -> Any:
    if name not in _ELSEWHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"chathistory.{_ELSEWHERE[name]}"), name)

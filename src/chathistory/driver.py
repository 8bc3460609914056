"""The one way a backend's operations run: written once, driven in sync and in async by the core.

A backend writes each operation once, as a generator of *requests* to its
driver: it yields a request (a SQL statement and its parameters, a Redis
command, an HTTP call...), receives the driver's reply, and returns its
result. Work done before the first ``yield`` (checking and encoding the
input) runs before any connection is taken, and an operation that returns
before yielding (``fetch(limit=0)``) takes none::

    def _append(self, session_id: str, texts: list[str]) -> Operation[None]:
        yield ("INSERT INTO t (session_id, message) VALUES (?, ?)",
               [(session_id, text) for text in texts])

A small :class:`Driver` says how to reach the store: a connection from the
driver's own sync pool, one from the async pool of the running event loop
(or no native async at all), how to send one request on each, which errors
are transient and how an error reads as a chathistory error.

A :class:`Runner` runs the operations, sync and async, the same way for
every backend: the one retry path (:func:`~chathistory.retry.retry_transient`,
rebuilding the operation on each try), one async pool per event loop, a
WARNING log line per retry and, with ``opentelemetry-api`` installed, one
span per operation. A backend class declares its public methods with
:func:`operation`, and their async twins in one line each::

    class JsonBackend(BaseBackend):
        def __init__(self, config: Config) -> None:
            super().__init__(config)
            self.runner = Runner(self, JsonDriver(config))

        @operation(write=True)
        def append(self, session_id: str, records: Sequence[Mapping[str, Any]]
                   ) -> Operation[None]:
            texts = [encode_record(record) for record in records]  # before any I/O
            yield ("append", session_id, texts)

        aappend = append.async_twin

The event-loop policy: each event loop that makes an async call gets its own
async pool (:meth:`Driver.open_pool`), on its first call. The pool is closed
in its loop by :meth:`Runner.aclose`, or when the loop shuts down
(``asyncio.run`` finalizes async generators, and one of ours holds the pool);
:meth:`Runner.close` closes the sync pool and asks every running loop to
close its own. A pool whose loop ended without either is dropped
(:meth:`Driver.forget_pool`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from typing import (
    Any,
    Concatenate,
    Generic,
    ParamSpec,
    Protocol,
    Self,
    TypeAlias,
    TypeVar,
    overload,
)

from chathistory.retry import aretry_transient, retry_transient

__all__ = [
    "AsyncOperationMethod",
    "Call",
    "Driver",
    "Operation",
    "OperationMethod",
    "Runner",
    "operation",
    "package_logger",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
P = ParamSpec("P")
Conn = TypeVar("Conn")
AsyncPool = TypeVar("AsyncPool")
AsyncConn = TypeVar("AsyncConn")

Operation: TypeAlias = Generator[Any, Any, T]
"""An operation: yields requests to the driver, receives each reply, returns its result."""


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
        stored twice. The default: nothing is transient.
        """
        return False

    def translate(self, error: BaseException, call: Call) -> BaseException:
        """The chathistory error (from :mod:`chathistory.errors`) for a driver's ``error``.

        Return ``error`` itself for errors that are not the driver's (a
        ``ValueError`` from checking the input). The default translates nothing.
        """
        return error

    def close(self) -> None:
        """Close the sync pool the driver made. Idempotent; a later call may reopen it."""


def package_logger(backend: object) -> logging.Logger:
    """The logger of the package that defines ``backend``'s class (``chathistory_postgres``)."""
    return logging.getLogger(type(backend).__module__.partition(".")[0])


def _first_line(error: BaseException) -> str:
    """The error's type and first line, cut short: enough to diagnose, no payload."""
    text = str(error).strip().split("\n", 1)[0]
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class _Tracing:
    """OpenTelemetry, when opentelemetry-api is installed; looked up on the first operation.

    Without it nothing is imported. With it but no tracer provider set (or a
    no-op one), an operation makes no span at all: a check of one global.
    """

    def __init__(self) -> None:
        self.loaded = False
        self.trace: Any = None
        self._idle: tuple[type, ...] = ()
        self._provider: Any = None
        self._tracer: Any = None

    def load(self) -> bool:
        if not self.loaded:
            try:
                from opentelemetry import trace
            except ImportError:
                pass
            else:
                self.trace = trace
                self._idle = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
            self.loaded = True
        return self.trace is not None

    def tracer(self) -> Any:
        """The tracer of the provider set now, or None when none records spans."""
        provider = self.trace.get_tracer_provider()
        if isinstance(provider, self._idle):
            return None
        if provider is not self._provider:
            self._provider, self._tracer = provider, provider.get_tracer("chathistory")
        return self._tracer


_tracing = _Tracing()


class Runner(Generic[Conn, AsyncPool, AsyncConn]):
    """Runs a backend's operations through its :class:`Driver`, sync and async.

    Args:
        backend: The backend; its ``name`` is in messages and spans, and its
            class's package names the logger (:func:`package_logger`).
        driver: The backend's driver.
        attempts: Tries per operation, the first included, while the errors are
            transient.
        max_wait: The longest wait between two tries, in seconds.

    Raises (from :meth:`run` and :meth:`arun`):
        chathistory.BackendUnavailableError: still transient after the last try.
        Exception: any other error, as :meth:`Driver.translate` reads it.
    """

    def __init__(self, backend: object, driver: Driver[Conn, AsyncPool, AsyncConn], *,
                 attempts: int = 4, max_wait: float = 1.0) -> None:
        self.backend: str = str(getattr(backend, "name", type(backend).__name__))
        self.driver = driver
        self.logger = package_logger(backend)
        self.attempts = attempts
        self.max_wait = max_wait
        self._otel = _tracing.load()
        self._calls: dict[tuple[str, bool, bool], Call] = {}
        self._lock = threading.Lock()
        # Each event loop's pool, with the suspended generator that closes it at loop shutdown.
        self._pools: dict[asyncio.AbstractEventLoop,
                          tuple[AsyncPool, AsyncGenerator[None, None]]] = {}

    @property
    def tracing(self) -> bool:
        """Whether operations become spans now: opentelemetry-api and a tracer provider are set."""
        return self._otel and _tracing.tracer() is not None

    def call(self, operation: str, write: bool = False, transaction: bool = False) -> Call:
        """The :class:`Call` for these settings (made once, then reused)."""
        key = (operation, write, transaction)
        call = self._calls.get(key)
        if call is None:
            call = self._calls[key] = Call(self.backend, operation, write, transaction)
        return call

    # -- sync ---------------------------------------------------------------------------

    def run(self, operation: str, steps: Callable[[], Operation[T]], *, write: bool = False,
            transaction: bool = False, sessions: int | None = None,
            records: int | None = None) -> T:
        """Run the operation ``steps()`` builds (again on each retry); return its result.

        Args:
            operation: Its name, for errors, logs and spans.
            steps: Builds the operation's generator; called once per try.
            write: It changes the store (retried only when nothing ran).
            transaction: Its requests run in one transaction.
            sessions: How many sessions it touches, for its span (when known up front).
            records: How many records it writes, for its span.
        """
        call = self.call(operation, write, transaction)
        tracer = _tracing.tracer() if self._otel else None
        if tracer is None:
            return self._run(call, steps)
        with self._span(tracer, call, sessions, records) as span:
            result = self._run(call, steps)
            _count_result(span, result, sessions, records)
            return result

    def _run(self, call: Call, steps: Callable[[], Operation[T]]) -> T:
        driver = self.driver
        return retry_transient(
            lambda: self._once(call, steps), backend=self.backend,
            is_transient=lambda error: driver.is_transient(error, write=call.write),
            translate=lambda error: driver.translate(error, call),
            attempts=self.attempts, max_wait=self.max_wait,
            on_retry=lambda attempt, error: self._log_retry(call, attempt, error))

    def _once(self, call: Call, steps: Callable[[], Operation[T]]) -> T:
        operation = steps()
        try:
            request = next(operation)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        send = self.driver.send
        with self.driver.connection(call) as connection:
            while True:
                # StopIteration is caught here, inside the context: it must see a clean exit.
                try:
                    reply = send(connection, request)
                except Exception as error:
                    try:
                        request = operation.throw(error)
                    except StopIteration as done:
                        return done.value  # type: ignore[no-any-return]
                    continue
                try:
                    request = operation.send(reply)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]

    # -- async --------------------------------------------------------------------------

    async def arun(self, operation: str, steps: Callable[[], Operation[T]], *,
                   write: bool = False, transaction: bool = False,
                   sessions: int | None = None, records: int | None = None) -> T:
        """Async :meth:`run`: on the running loop's pool, or in a worker thread.

        Without native async, the sync path runs in a worker thread (retries
        and their waits included), so the event loop never blocks.
        """
        call = self.call(operation, write, transaction)
        tracer = _tracing.tracer() if self._otel else None
        if tracer is None:
            return await self._arun(call, steps)
        with self._span(tracer, call, sessions, records) as span:
            result = await self._arun(call, steps)
            _count_result(span, result, sessions, records)
            return result

    async def _arun(self, call: Call, steps: Callable[[], Operation[T]]) -> T:
        if not self.driver.native_async:
            return await asyncio.to_thread(self._run, call, steps)
        driver = self.driver
        return await aretry_transient(
            lambda: self._aonce(call, steps), backend=self.backend,
            is_transient=lambda error: driver.is_transient(error, write=call.write),
            translate=lambda error: driver.translate(error, call),
            attempts=self.attempts, max_wait=self.max_wait,
            on_retry=lambda attempt, error: self._log_retry(call, attempt, error))

    async def _aonce(self, call: Call, steps: Callable[[], Operation[T]]) -> T:
        operation = steps()
        try:
            request = next(operation)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        pool = await self.pool()
        asend = self.driver.asend
        async with self.driver.async_connection(pool, call) as connection:
            while True:
                try:
                    reply = await asend(connection, request)
                except Exception as error:
                    try:
                        request = operation.throw(error)
                    except StopIteration as done:
                        return done.value  # type: ignore[no-any-return]
                    continue
                try:
                    request = operation.send(reply)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]

    async def pool(self) -> AsyncPool:
        """The running event loop's async pool, opened on the loop's first call."""
        loop = asyncio.get_running_loop()
        held = self._pools.get(loop)
        if held is not None:
            return held[0]
        pool = await self.driver.open_pool()
        with self._lock:
            ended = [old for old in self._pools if old.is_closed()]
            dropped = [self._pools.pop(old)[0] for old in ended]
            held = self._pools.get(loop)
            if held is None:
                closer = self._close_at_shutdown(loop, pool)
                self._pools[loop] = (pool, closer)
        for old in dropped:
            self.driver.forget_pool(old)
        if held is not None:  # another task of this loop opened one first
            await self.driver.close_pool(pool)
            return held[0]
        # Started, the generator is one the loop finalizes at shutdown (asyncio.run and
        # asyncio.Runner call loop.shutdown_asyncgens()), which closes the pool in its loop.
        await anext(closer)
        return pool

    async def _close_at_shutdown(self, loop: asyncio.AbstractEventLoop, pool: AsyncPool
                                 ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            with self._lock:
                if loop in self._pools and self._pools[loop][0] is pool:
                    del self._pools[loop]
            await self.driver.close_pool(pool)

    # -- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync pool, and ask each running loop to close its async pool.

        A pool whose loop has ended is dropped. The runner stays usable: a
        later call opens new pools.
        """
        self.driver.close()
        with self._lock:
            pools, self._pools = self._pools, {}
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, (pool, closer) in pools.items():
            if loop.is_closed():
                self.driver.forget_pool(pool)
            elif loop is running:
                loop.create_task(closer.aclose())
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(closer.aclose(), loop)
            else:
                # Stopped but not closed: its shutdown_asyncgens will close the pool.
                with self._lock:
                    self._pools[loop] = (pool, closer)

    async def aclose(self) -> None:
        """Close the running loop's pool now, the sync pool in a worker thread, and the
        other loops' pools as :meth:`close` does."""
        with self._lock:
            held = self._pools.pop(asyncio.get_running_loop(), None)
        try:
            if held is not None:
                await held[1].aclose()
        finally:
            await asyncio.to_thread(self.close)

    # -- logs and traces ----------------------------------------------------------------

    def _log_retry(self, call: Call, attempt: int, error: BaseException) -> None:
        self.logger.warning(
            "backend %r: %s failed on attempt %d of %d and is retried: %s",
            call.backend, call.operation, attempt, self.attempts, _first_line(error))

    def _span(self, tracer: Any, call: Call, sessions: int | None, records: int | None
              ) -> AbstractContextManager[Any]:
        attributes: dict[str, str | int] = {
            "chathistory.backend": call.backend, "chathistory.operation": call.operation}
        if sessions is not None:
            attributes["chathistory.sessions"] = sessions
        if records is not None:
            attributes["chathistory.records"] = records
        # Exceptions are named on the span, never recorded: their text may quote a record.
        return _Span(tracer.start_as_current_span(
            f"chathistory {call.operation}", attributes=attributes,
            record_exception=False, set_status_on_exception=False))


class _Span:
    """A span context that marks an error by its type's name only."""

    def __init__(self, context: AbstractContextManager[Any]) -> None:
        self._context = context
        self._span: Any = None

    def __enter__(self) -> Any:
        self._span = self._context.__enter__()
        return self._span

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> bool | None:
        if error is not None and self._span.is_recording():
            trace = _tracing.trace
            self._span.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))
            self._span.set_attribute("error.type", type(error).__name__)
        return self._context.__exit__(kind, error, traceback)


def _count_result(span: Any, result: object, sessions: int | None, records: int | None
                  ) -> None:
    """Set the counts a read learns from its result: records fetched, sessions listed."""
    if not span.is_recording():
        return
    if isinstance(result, list):
        if records is None and (not result or isinstance(result[0], dict | str)):
            span.set_attribute("chathistory.records", len(result))
        elif sessions is None and result:
            span.set_attribute("chathistory.sessions", len(result))
    elif isinstance(result, dict):
        if sessions is None:
            span.set_attribute("chathistory.sessions", len(result))
        if records is None and all(isinstance(value, list) for value in result.values()):
            span.set_attribute("chathistory.records",
                               sum(len(value) for value in result.values()))
    elif isinstance(result, int) and not isinstance(result, bool) and sessions is None:
        span.set_attribute("chathistory.sessions", result)  # a prune's count


def _input_counts(signature: inspect.Signature, instance: object, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> tuple[int | None, int | None]:
    """Sessions and records an operation's arguments name, by the protocol's parameter names."""
    try:
        bound = signature.bind(instance, *args, **kwargs).arguments
    except TypeError:
        return None, None
    sessions: int | None = None
    records: int | None = None
    if "session_id" in bound:
        sessions = 1
    if isinstance(bound.get("session_ids"), Sequence):
        sessions = len(bound["session_ids"])
    for name in ("records", "texts"):
        if isinstance(bound.get(name), Sequence):
            records = len(bound[name])
    batches = bound.get("batches")
    if isinstance(batches, Mapping):
        sessions = len(batches)
        records = sum(len(batch) for batch in batches.values())
    return sessions, records


def _class_attribute(instance: object, name: str) -> object:
    """What ``name`` is on ``instance``'s class, found without running any descriptor."""
    for klass in type(instance).__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    return None


def _keep(instance: object, name: str, descriptor: object, method: Callable[..., Any]) -> None:
    """Keep the bound method on the instance: later lookups find it there, at no cost.

    (The descriptor defines no ``__set__``, so the instance's own attribute wins.)
    Only when the instance's class has this very descriptor under ``name``: one
    reached through ``super()`` from a subclass's override must not hide it.
    """
    if _class_attribute(instance, name) is not descriptor:
        return
    with contextlib.suppress(TypeError):  # an instance without __dict__ binds on each lookup
        vars(instance)[name] = method


class OperationMethod(Generic[P, T]):
    """A backend method written once as an operation, run by the backend's ``runner``.

    Made by :func:`operation`. On an instance, it is the sync method (``P -> T``);
    :attr:`async_twin` is its async twin, to assign in the class body. The
    method is bound once per instance, to the instance's ``runner`` of that
    moment: set ``self.runner`` in ``__init__``, before any call.
    """

    def __init__(self, steps: Callable[Concatenate[Any, P], Operation[T]], *,
                 write: bool, transaction: bool) -> None:
        self.steps = steps
        self.write = write
        self.transaction = transaction
        self.name = steps.__name__
        self._signature = inspect.signature(steps)
        functools.update_wrapper(self, steps)  # type: ignore[arg-type]

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @property
    def async_twin(self) -> AsyncOperationMethod[P, T]:
        """The async method that runs the same operation: ``aappend = append.async_twin``."""
        return AsyncOperationMethod(self)

    def counts(self, instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]
               ) -> tuple[int | None, int | None]:
        return _input_counts(self._signature, instance, args, kwargs)

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> Callable[P, T]: ...

    def __get__(self, instance: object | None, owner: type | None = None
                ) -> Self | Callable[P, T]:
        if instance is None:
            return self
        runner: Runner[Any, Any, Any] = instance.runner  # type: ignore[attr-defined]
        steps, name, write, transaction = self.steps, self.name, self.write, self.transaction

        def method(*args: P.args, **kwargs: P.kwargs) -> T:
            sessions, records = (self.counts(instance, args, kwargs) if runner.tracing
                                 else (None, None))
            return runner.run(name, lambda: steps(instance, *args, **kwargs), write=write,
                              transaction=transaction, sessions=sessions, records=records)

        functools.update_wrapper(method, self.steps)
        _keep(instance, self.name, self, method)
        return method


class BoundAsync(Protocol[P, T_co]):
    """An async twin bound to its backend: called like the sync method, awaited for its result.

    (A protocol rather than ``Callable``: mypy would bind a callable class
    attribute as a method once more, and drop the first parameter.)
    """

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, T_co]: ...


class AsyncOperationMethod(Generic[P, T]):
    """The async twin of an :class:`OperationMethod`: the same operation, through ``arun``.

    It runs the operation, not the sync method: a subclass that overrides the
    sync method and wants the async one changed too overrides both.
    """

    def __init__(self, sync: OperationMethod[P, T]) -> None:
        self.sync = sync
        self.name = "a" + sync.name

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> BoundAsync[P, T]: ...

    def __get__(self, instance: object | None, owner: type | None = None
                ) -> Self | BoundAsync[P, T]:
        if instance is None:
            return self
        runner: Runner[Any, Any, Any] = instance.runner  # type: ignore[attr-defined]
        sync = self.sync
        steps, name, write, transaction = sync.steps, sync.name, sync.write, sync.transaction
        async def method(*args: P.args, **kwargs: P.kwargs) -> T:
            sessions, records = (sync.counts(instance, args, kwargs) if runner.tracing
                                 else (None, None))
            return await runner.arun(name, lambda: steps(instance, *args, **kwargs),
                                     write=write, transaction=transaction,
                                     sessions=sessions, records=records)

        functools.update_wrapper(method, sync.steps)
        method.__name__ = method.__qualname__ = self.name
        _keep(instance, self.name, self, method)
        return method


def operation(*, write: bool = False, transaction: bool = False
              ) -> Callable[[Callable[Concatenate[Any, P], Operation[T]]], OperationMethod[P, T]]:
    """Declare a backend method written once as an operation (a generator of requests).

    The decorated generator method becomes the sync method, run by the
    instance's ``runner`` (a :class:`Runner`); ``its.async_twin`` is the async
    method::

        @operation()
        def fetch(self, session_id: str, *, limit: int | None = None
                  ) -> Operation[list[dict[str, Any]]]:
            rows = yield ("SELECT ...", (session_id,))
            return [decode_record(text) for (text,) in rows]

        afetch = fetch.async_twin

    Args:
        write: The operation changes the store: retried only when the driver
            says nothing of it ran.
        transaction: Its requests run in one transaction.

    For spans, the arguments named ``session_id``, ``session_ids``,
    ``records``, ``texts`` and ``batches`` count the sessions and records.
    """
    def decorate(steps: Callable[Concatenate[Any, P], Operation[T]]) -> OperationMethod[P, T]:
        return OperationMethod(steps, write=write, transaction=transaction)

    return decorate

"""The runner: every backend operation, sync and async, with one retry path, one event-loop
policy, a WARNING per retry and an OpenTelemetry span per operation.

See :mod:`chathistory.driver` for the operations it runs and the drivers it runs them on.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import threading
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

from chathistory.driver import AsyncConn, AsyncPool, Call, Conn, Driver, Operation, Phase
from chathistory.retry import aretry_after, retry_after

__all__ = ["Counts", "Runner", "argument_counts", "mark_failed_while", "package_logger"]

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)

Counts = Callable[[], tuple[int | None, int | None]]
"""Gives the sessions and records an operation touches, for its span."""


def package_logger(backend: object) -> logging.Logger:
    """The logger of the package that defines ``backend``'s class (``chathistory_postgres``)."""
    return logging.getLogger(type(backend).__module__.partition(".")[0])


def mark_failed_while(error: E, phase: Phase) -> E:
    """Mark ``error`` as raised while ``phase``, for :func:`~chathistory.driver.failed_while`
    (the runner marks each failed try's error; a test of a driver's hooks may too)."""
    error._chathistory_failed_while = phase  # type: ignore[attr-defined]
    return error


@functools.cache
def _signature(function: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(function)


def argument_counts(steps: Callable[[], Any]) -> tuple[int | None, int | None]:
    """The sessions and records the arguments of ``steps`` name, by the protocol's names.

    ``steps`` is a ``functools.partial`` of the operation's function (what
    :func:`~chathistory.operations.operation` gives the runner): its arguments
    named ``session_id`` (one session), ``session_ids``, ``records``, ``texts``
    and ``batches`` (sessions and their records) count. Anything else counts
    nothing: ``(None, None)``.
    """
    if not isinstance(steps, functools.partial):
        return None, None
    try:
        bound = _signature(steps.func).bind(*steps.args, **steps.keywords).arguments
    except (TypeError, ValueError):
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


def _first_line(error: BaseException) -> str:
    """The error's type and first line, cut short: enough to diagnose, no payload."""
    text = str(error).strip().split("\n", 1)[0]
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class _Tracing:
    """OpenTelemetry, when opentelemetry-api is installed; looked up on the first operation.

    Without it nothing is imported. With it but no tracer provider set (or a
    no-op one), an operation makes no span at all. A provider, once set, is
    final (OpenTelemetry refuses to replace it), so it is looked up only until
    then: when a runner is made, and at most once a second in between (the
    lookup reads the environment, a microsecond an operation need not pay).
    """

    def __init__(self) -> None:
        self.loaded = False
        self.trace: Any = None
        self._final = False
        self._tracer: Any = None
        self.next_lookup = 0.0
        """Until then (time.monotonic()), :meth:`tracer` would give None: an operation need
        not ask. Once the provider is final, -inf with a tracer, inf without."""

    def load(self) -> bool:
        if not self.loaded:
            try:
                from opentelemetry import trace
            except ImportError:
                pass
            else:
                self.trace = trace
            self.loaded = True
        if not self._final:
            self.next_lookup = 0.0  # a new runner looks the provider up on its first call
        return self.trace is not None

    def tracer(self) -> Any:
        """The tracer of the provider set, or None while none is (or a no-op one is)."""
        if self._final:
            return self._tracer
        now = time.monotonic()
        if now < self.next_lookup:
            return None
        self.next_lookup = now + 1.0
        provider = self.trace.get_tracer_provider()
        if isinstance(provider, self.trace.ProxyTracerProvider):
            return None  # none set yet
        if not isinstance(provider, self.trace.NoOpTracerProvider):
            self._tracer = provider.get_tracer("chathistory")
        self._final = True
        self.next_lookup = -math.inf if self._tracer is not None else math.inf
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
        self._closing: set[asyncio.Task[None]] = set()
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
            records: int | None = None, counts: Counts | None = None) -> T:
        """Run the operation ``steps()`` builds (again on each retry); return its result.

        Args:
            operation: Its name, for errors, logs and spans.
            steps: Builds the operation's generator; called once per try.
            write: It changes the store (retried only when nothing ran).
            transaction: Its requests run in one transaction.
            sessions: How many sessions it touches, for its span (when known up front).
            records: How many records it writes, for its span.
            counts: Or a function giving both, called only when a span records.
                Given none of the three, a span counts the arguments of
                ``steps`` when it is a ``functools.partial`` (what
                :func:`~chathistory.operations.operation` passes; see
                :func:`argument_counts`).
        """
        # (The calls and the tracing check inline, and the first try run here: each frame
        # less on every operation's path counts when the caches are cold between turns.)
        call = self._calls.get((operation, write, transaction)) \
            or self.call(operation, write, transaction)
        if self._otel and time.monotonic() >= _tracing.next_lookup:
            tracer = _tracing.tracer()
            if tracer is not None:
                sessions, records = _counts(steps, sessions, records, counts)
                with self._span(tracer, call, sessions, records) as span:
                    result = self._run(call, steps)
                    _count_result(span, result, sessions, records)
                    return result
        try:
            return self._once(call, steps)
        except Exception as error:
            return retry_after(error, lambda: self._once(call, steps), **self._policy(call))

    def _run(self, call: Call, steps: Callable[[], Operation[T]]) -> T:
        try:
            return self._once(call, steps)
        except Exception as error:
            return retry_after(error, lambda: self._once(call, steps), **self._policy(call))

    def _policy(self, call: Call) -> dict[str, Any]:
        """The retry settings of ``call``, for its tries after the first failed."""
        driver = self.driver
        return {
            "backend": self.backend,
            "is_transient": lambda error: driver.is_transient(error, write=call.write),
            "translate": lambda error: driver.translate(error, call),
            "attempts": self.attempts, "max_wait": self.max_wait,
            "on_retry": lambda attempt, error: self._log_retry(call, attempt, error),
        }

    def _once(self, call: Call, steps: Callable[[], Operation[T]]) -> T:
        # The operation is resumed with each reply, or the driver's error is thrown into
        # it, until it returns: its StopIteration is caught where it is raised (escaping
        # into the connection's context, it would read as a failure and roll back).
        operation = steps()
        try:
            request = operation.send(None)
        except StopIteration as returned:
            return returned.value  # type: ignore[no-any-return]
        send = self.driver.send
        phase: Phase = "connect"
        try:
            with self.driver.connection(call) as connection:
                phase = "send"
                while True:
                    try:
                        reply = send(connection, request)
                    except Exception as error:
                        try:
                            request = operation.throw(error)
                        except StopIteration as returned:
                            result: T = returned.value
                            break
                    else:
                        try:
                            request = operation.send(reply)
                        except StopIteration as returned:
                            result = returned.value
                            break
                phase = "commit"
        except Exception as error:
            mark_failed_while(error, phase)
            raise
        return result

    # -- async --------------------------------------------------------------------------

    async def arun(self, operation: str, steps: Callable[[], Operation[T]], *,
                   write: bool = False, transaction: bool = False,
                   sessions: int | None = None, records: int | None = None,
                   counts: Counts | None = None) -> T:
        """Async :meth:`run`: on the running loop's pool, or in a worker thread.

        Without native async, the sync path runs in a worker thread (retries
        and their waits included), so the event loop never blocks.
        """
        call = self._calls.get((operation, write, transaction)) \
            or self.call(operation, write, transaction)  # (inline, as in run)
        if self._otel and time.monotonic() >= _tracing.next_lookup:
            tracer = _tracing.tracer()
            if tracer is not None:
                sessions, records = _counts(steps, sessions, records, counts)
                with self._span(tracer, call, sessions, records) as span:
                    result = await self._arun(call, steps)
                    _count_result(span, result, sessions, records)
                    return result
        return await self._arun(call, steps)

    async def _arun(self, call: Call, steps: Callable[[], Operation[T]]) -> T:
        if not self.driver.native_async:
            return await asyncio.to_thread(self._run, call, steps)
        try:
            return await self._aonce(call, steps)
        except Exception as error:
            return await aretry_after(error, lambda: self._aonce(call, steps),
                                      **self._policy(call))

    async def _aonce(self, call: Call, steps: Callable[[], Operation[T]]) -> T:
        operation = steps()  # (as in _once)
        try:
            request = operation.send(None)
        except StopIteration as returned:
            return returned.value  # type: ignore[no-any-return]
        asend = self.driver.asend
        phase: Phase = "connect"
        try:
            held = self._pools.get(asyncio.get_running_loop())
            pool = held[0] if held is not None else await self.pool()
            async with self.driver.async_connection(pool, call) as connection:
                phase = "send"
                while True:
                    try:
                        reply = await asend(connection, request)
                    except Exception as error:
                        try:
                            request = operation.throw(error)
                        except StopIteration as returned:
                            result: T = returned.value
                            break
                    else:
                        try:
                            request = operation.send(reply)
                        except StopIteration as returned:
                            result = returned.value
                            break
                phase = "commit"
        except Exception as error:
            mark_failed_while(error, phase)
            raise
        return result

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
            elif loop is running:  # close() called in a coroutine: close it soon, in this loop
                task = loop.create_task(closer.aclose())
                self._closing.add(task)  # the loop keeps only a weak reference to a task
                task.add_done_callback(self._closing.discard)
            elif loop.is_running():
                try:
                    asyncio.run_coroutine_threadsafe(closer.aclose(), loop)
                except RuntimeError:  # the loop closed meanwhile
                    self.driver.forget_pool(pool)
            else:
                # Stopped but not closed: its shutdown_asyncgens will close the pool.
                with self._lock:
                    self._pools[loop] = (pool, closer)

    async def aclose(self) -> None:
        """Close the running loop's pool now, the sync pool in a worker thread, and the
        other loops' pools as :meth:`close` does."""
        try:
            await self.aclose_loop()
        finally:
            await asyncio.to_thread(self.close)

    async def aclose_loop(self) -> None:
        """Close the running loop's pool now (a later call in this loop opens a new one)."""
        with self._lock:
            held = self._pools.pop(asyncio.get_running_loop(), None)
        if held is not None:
            await held[1].aclose()

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


def _counts(steps: Callable[[], Any], sessions: int | None, records: int | None,
            counts: Counts | None) -> tuple[int | None, int | None]:
    """A span's counts: those given, else what ``counts()`` gives, else the arguments'."""
    if counts is not None:
        return counts()
    if sessions is None and records is None:
        return argument_counts(steps)
    return sessions, records


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

"""Backend methods declared once, as operations: the sync method and its async twin.

See :func:`operation`, and :mod:`chathistory.driver` for what an operation is.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from functools import partial, update_wrapper
from types import MethodType
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, Self, TypeVar, overload

from chathistory.driver import Operation
from chathistory.runner import Runner

__all__ = ["AsyncOperationMethod", "BoundAsync", "OperationMethod", "operation"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
P = ParamSpec("P")


def _named(function: Callable[..., Any], steps: Callable[..., Any], name: str) -> None:
    """Give the function behind a method the operation's name and docstring."""
    function.__name__ = name
    function.__qualname__ = f"{steps.__qualname__.rpartition('.')[0]}.{name}".lstrip(".")
    function.__doc__ = steps.__doc__


class OperationMethod(Generic[P, T]):
    """A backend method written once as an operation, run by the backend's ``runner``.

    Made by :func:`operation`. On an instance, it is the sync method (``P -> T``).
    Its async twin, ``a`` + its name, is added to the class unless the class
    body names one (``aappend = append.async_twin`` declares it explicitly; a
    name starting with ``_`` gets no twin). A call runs on the instance's
    ``runner`` (``self.runner``, set in ``__init__``).
    """

    def __init__(self, steps: Callable[Concatenate[Any, P], Operation[T]], *,
                 write: bool, transaction: bool) -> None:
        self.steps = steps
        self.write = write
        self.transaction = transaction
        self.name = steps.__name__
        update_wrapper(self, steps)  # type: ignore[arg-type]
        self._function = self._make_function()

    def _make_function(self) -> Callable[..., T]:
        """The function a lookup binds to the instance (made once: binding it is cheap)."""
        steps, name, write, transaction = self.steps, self.name, self.write, self.transaction

        def method(instance: Any, /, *args: Any, **kwargs: Any) -> T:
            runner: Runner[Any, Any, Any] = instance.runner
            return runner.run(name, partial(steps, instance, *args, **kwargs), write=write,
                              transaction=transaction)

        _named(method, steps, name)
        return method

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self._function = self._make_function()
        if not name.startswith("_") and "a" + name not in vars(owner):
            setattr(owner, "a" + name, AsyncOperationMethod(self))

    @property
    def async_twin(self) -> AsyncOperationMethod[P, T]:
        """The async method that runs the same operation: ``aappend = append.async_twin``."""
        return AsyncOperationMethod(self)

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> Callable[P, T]: ...

    def __get__(self, instance: object | None, owner: type | None = None
                ) -> Self | Callable[P, T]:
        if instance is None:
            return self
        return MethodType(self._function, instance)


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
        self._function = self._make_function()

    def _make_function(self) -> Callable[..., Coroutine[Any, Any, T]]:
        """The coroutine function a lookup binds to the instance (made once)."""
        sync = self.sync
        steps, write, transaction = sync.steps, sync.write, sync.transaction

        async def method(instance: Any, /, *args: Any, **kwargs: Any) -> T:
            runner: Runner[Any, Any, Any] = instance.runner
            return await runner.arun(sync.name, partial(steps, instance, *args, **kwargs),
                                     write=write, transaction=transaction)

        _named(method, steps, self.name)
        return method

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self._function = self._make_function()

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> BoundAsync[P, T]: ...

    def __get__(self, instance: object | None, owner: type | None = None
                ) -> Self | BoundAsync[P, T]:
        if instance is None:
            return self
        return MethodType(self._function, instance)


def operation(*, write: bool = False, transaction: bool = False
              ) -> Callable[[Callable[Concatenate[Any, P], Operation[T]]], OperationMethod[P, T]]:
    """Declare a backend method written once as an operation (a generator of requests).

    The decorated generator method becomes the sync method, run by the
    instance's ``runner`` (a :class:`Runner`), and the class gets its async
    twin, ``a`` + its name, running the same operation through ``arun``::

        @operation()
        def fetch(self, session_id: str, *, limit: int | None = None
                  ) -> Operation[list[dict[str, Any]]]:
            rows = yield ("SELECT ...", (session_id,))
            return decode_records([text for (text,) in rows])

        # backend.fetch("s") and await backend.afetch("s") both run it.

    ``afetch = fetch.async_twin`` in the class body names the twin explicitly
    (the type checker then sees a twin that no base class declares).

    Args:
        write: The operation changes the store: retried only when the driver
            says nothing of it ran.
        transaction: Its requests run in one transaction.

    A call hands the runner the generator function bound to its arguments
    (a ``functools.partial``), so no closure is made per call; for spans, the
    runner counts the sessions and records its arguments named
    ``session_id``, ``session_ids``, ``records``, ``texts`` and ``batches``
    name.
    """
    def decorate(steps: Callable[Concatenate[Any, P], Operation[T]]) -> OperationMethod[P, T]:
        return OperationMethod(steps, write=write, transaction=transaction)

    return decorate

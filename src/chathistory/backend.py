"""The backend protocol, the base class with async defaults, and backend configuration."""

from __future__ import annotations

import asyncio
import threading
import types
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    ClassVar,
    Protocol,
    Self,
    Union,
    get_args,
    get_origin,
    runtime_checkable,
)

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError
from pydantic_core import ErrorDetails

from chathistory.errors import ConfigError

if TYPE_CHECKING:
    from chathistory.driver import Runner

__all__ = [
    "IDENTIFIER_PATTERN",
    "Backend",
    "BackendConfig",
    "BaseBackend",
    "Identifier",
    "aensure_collection",
    "ensure_collection",
    "validate_options",
]

IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
"""What a name that reaches a query (table, schema, key prefix...) may look like."""

Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN)]
"""A config field type for names that reach a query: letters, digits and ``_``, at most 63."""


class BackendConfig(BaseModel):
    """Base of every backend's options. Unknown options are an error, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


@runtime_checkable
class Backend(Protocol):
    """What :class:`~chathistory.ChatHistory` needs from a store.

    A *record* is the JSON object ``langchain_core.messages.message_to_dict``
    makes. A backend stores records as opaque JSON and gives back exactly what
    it was given, in order.
    """

    def create_collection(self) -> None:
        """Create the table, collection or index if it is missing. Idempotent."""

    def append(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        """Store ``records`` after the session's existing ones: all or nothing, one round trip."""

    def fetch(self, session_id: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """The session's records, oldest first; with ``limit``, only the newest ``limit``."""

    def clear(self, session_id: str) -> None:
        """Delete this session's records and no other's."""

    def close(self) -> None:
        """Release connections. Idempotent."""

    async def acreate_collection(self) -> None: ...
    async def aappend(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None: ...
    async def afetch(
        self, session_id: str, *, limit: int | None = None
    ) -> list[dict[str, Any]]: ...
    async def aclear(self, session_id: str) -> None: ...
    async def aclose(self) -> None: ...


def validate_options(name: str, config_class: type[BackendConfig], options: Mapping[str, Any],
                     *, from_strings: bool = False) -> BackendConfig:
    """Build ``config_class`` from ``options``, or raise :class:`ConfigError`.

    The message names the backend and each bad field, and never repeats the
    value given, so a secret passed to the wrong field does not leak.

    Args:
        name: The backend's name, for the message.
        config_class: The backend's ``Config``.
        options: The options, by field name (or alias).
        from_strings: The values are text, as typed on a command line: each is
            converted to its field's type (``"600"`` to an int, ``"false"`` to
            a bool), strict fields included.

    A check across fields (a pydantic ``model_validator``) names the options
    itself: a ``ValueError("option 'conninfo' is required, unless ...")`` it
    raises reads ``backend 'postgres': option 'conninfo' is required, ...``.
    """
    if from_strings:
        objects = [option for option in options if _takes_an_object(config_class, option)]
        if objects:
            raise ConfigError(f"backend {name!r}: " + "; ".join(
                f"option {option!r} takes a Python object, which text cannot give (pass it "
                "from Python code; on the command line, give the options it is made from)"
                for option in objects))
    try:
        if from_strings:
            return config_class.model_validate_strings(dict(options))
        return config_class(**options)
    except ValidationError as exc:
        problems = [_problem(config_class, error)
                    for error in exc.errors(include_input=False, include_url=False)]
        raise ConfigError(f"backend {name!r}: " + "; ".join(problems)) from None


def _takes_an_object(config_class: type[BackendConfig], option: str) -> bool:
    """Whether ``option`` (a field's name or alias) holds what no text converts to: a
    client, a pool, a function, a dict."""
    for field_name, info in config_class.model_fields.items():
        if option in (field_name, info.alias):
            return _is_object_type(info.annotation)
    return False  # an unknown option: validation names it


def _is_object_type(annotation: Any) -> bool:
    if annotation is Any:
        return True
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_is_object_type(arg) for arg in get_args(annotation))
    return origin in (dict, Mapping, Callable)


def _problem(config_class: type[BackendConfig], error: ErrorDetails) -> str:
    """One validation error as a sentence that names the option."""
    message = error["msg"]
    if error["type"] == "value_error":
        # pydantic prefixes what a validator raised; the validator's own words suffice.
        message = message.removeprefix("Value error, ")
    if not error["loc"]:
        return message  # a check across fields, which names the options itself
    field = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        known = ", ".join(info.alias or field_name for field_name, info
                          in config_class.model_fields.items()) or "none"
        return f"unknown option {field!r} (known options: {known})"
    if error["type"] == "missing":
        return f"option {field!r} is required"
    return f"option {field!r}: {message}"


class BaseBackend(ABC):
    """A convenient base for backends.

    Subclasses set ``name`` and ``Config``, and either:

    - write each operation once, as a generator of driver requests declared
      with :func:`chathistory.driver.operation`, set ``self.runner`` to a
      :class:`~chathistory.driver.Runner` over their driver; each operation's
      async twin (``aappend``) is added for them, and ``close``/``aclose`` close
      the runner's pools; or
    - implement the four sync methods, and inherit async twins that run them in
      a worker thread.
    """

    name: ClassVar[str] = "backend"
    Config: ClassVar[type[BackendConfig]] = BackendConfig
    runner: Runner[Any, Any, Any] | None = None
    """Runs the operations of a backend with a driver: ``self.runner = Runner(self, driver)``."""

    def __init__(self, config: BackendConfig) -> None:
        self.config = config

    @classmethod
    def from_options(cls, **options: Any) -> Self:
        """Validate ``options`` against ``Config`` and build the backend."""
        return cls(validate_options(cls.name, cls.Config, options))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    @abstractmethod
    def create_collection(self) -> None: ...

    @abstractmethod
    def append(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None: ...

    @abstractmethod
    def fetch(self, session_id: str, *, limit: int | None = None) -> list[dict[str, Any]]: ...

    @abstractmethod
    def clear(self, session_id: str) -> None: ...

    def close(self) -> None:
        """Release resources: the runner's pools, if the backend has a runner."""
        if self.runner is not None:
            self.runner.close()

    async def acreate_collection(self) -> None:
        await asyncio.to_thread(self.create_collection)

    async def aappend(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        await asyncio.to_thread(self.append, session_id, records)

    async def afetch(self, session_id: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.fetch, session_id, limit=limit)

    async def aclear(self, session_id: str) -> None:
        await asyncio.to_thread(self.clear, session_id)

    async def aclose(self) -> None:
        """:meth:`close` in a worker thread, after closing this event loop's pool now."""
        try:
            if self.runner is not None:
                await self.runner.aclose_loop()
        finally:
            await asyncio.to_thread(self.close)


class _CreatedCollections:
    """Which backend instances already ran ``create_collection``: once per instance.

    Each instance has its own lock, so a slow create (a Rockset collection
    that takes seconds to be ready) holds up only the first calls of that
    backend, never another backend's.

    Keyed by ``id()`` with a weak reference to tell a reused id from the same
    object, so a backend need not be hashable (a dataclass satisfying
    :class:`Backend` is not). A backend that cannot be weakly referenced is
    kept alive here instead: still created once, never mistaken for another.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards the tables only, never held during a create
        self._created: dict[int, Any] = {}
        self._locks: dict[int, tuple[Any, threading.Lock]] = {}

    @staticmethod
    def _held(reference: Any) -> object:
        return reference() if isinstance(reference, weakref.ref) else reference

    def __contains__(self, backend: object) -> bool:
        return self._held(self._created.get(id(backend))) is backend

    def _reference(self, backend: object, table: dict[int, Any]) -> Any:
        key = id(backend)

        def forget(_: object) -> None:
            table.pop(key, None)

        try:
            return weakref.ref(backend, forget)
        except TypeError:
            return backend

    def lock_of(self, backend: object) -> threading.Lock:
        """The lock that serializes this instance's first create."""
        with self._lock:
            entry = self._locks.get(id(backend))
            if entry is None or self._held(entry[0]) is not backend:
                entry = (self._reference(backend, self._locks), threading.Lock())
                self._locks[id(backend)] = entry
            return entry[1]

    def add(self, backend: object) -> None:
        with self._lock:
            self._created[id(backend)] = self._reference(backend, self._created)


_created = _CreatedCollections()


def ensure_collection(backend: Backend) -> None:
    """Run ``backend.create_collection()`` the first time this instance is used, only then.

    Threads using the same instance wait for its first create; other backends do not.
    """
    if backend in _created:
        return
    with _created.lock_of(backend):
        if backend not in _created:
            backend.create_collection()
            _created.add(backend)


async def aensure_collection(backend: Backend) -> None:
    """Async :func:`ensure_collection`, through ``acreate_collection``."""
    if backend in _created:
        return
    # Two coroutines may both create; create_collection is idempotent.
    await backend.acreate_collection()
    _created.add(backend)

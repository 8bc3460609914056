"""ChatHistory: a LangChain chat message history that stores nothing itself."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, get_buffer_string

from chathistory.backend import Backend, BaseBackend, aensure_collection, ensure_collection
from chathistory.catalog import (
    UNCHANGED,
    SessionSummary,
    Unchanged,
    check_unicode,
    check_update,
    require_catalog,
)
from chathistory.records import encode_records, to_messages, to_records
from chathistory.registry import NamedBackend

if TYPE_CHECKING:
    from langchain_core.chat_history import BaseChatMessageHistory as _HistoryBase
else:
    try:
        # Deprecated in langchain-core 1.6.4, to go in 2.0: while it exists,
        # ChatHistory is one, so RunnableWithMessageHistory and friends take it.
        from langchain_core.chat_history import BaseChatMessageHistory as _HistoryBase
    except ImportError:
        _HistoryBase = object

__all__ = ["DEFAULT_BACKEND", "ChatHistory", "SessionHistoryFactory", "history_factory"]

DEFAULT_BACKEND = "sqlite"


def check_session_id(session_id: object) -> str:
    """``session_id`` if it is a non-empty str without NUL or lone surrogates, else a
    ValueError saying why: what no backend can keep, or an export cannot carry as text,
    is refused before any backend is touched (Redis would keep a lone surrogate, a SQL
    store's codec would fail on it midway)."""
    if not isinstance(session_id, str):
        raise ValueError(f"session_id must be a str, not {type(session_id).__name__}")
    if not session_id:
        raise ValueError("session_id must not be empty")
    if "\x00" in session_id:
        raise ValueError("session_id must not contain NUL characters")
    return check_unicode("session_id", session_id)


def check_limit(limit: object, name: str = "limit") -> int | None:
    """``limit`` if it is None or an int >= 0, else a ValueError naming ``name``."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"{name} must be None or an int >= 0, not {limit!r}")
    return limit


def _records_of(messages: Iterable[BaseMessage], method: str) -> list[dict[str, Any]]:
    """The records of a list of messages; a single message or a string is a clear TypeError."""
    if type(messages) is not list and isinstance(messages, BaseMessage | str | bytes):
        raise TypeError(
            f"{method} takes a list of messages, not a single {type(messages).__name__}: "
            "pass a list, e.g. [message]"
        )
    return to_records(messages)  # which checks each item


def _read(records: list[dict[str, Any]], session_id: str, limit: int | None
          ) -> list[BaseMessage]:
    """The messages of fetched records; a record that is no message is a RecordError."""
    # With a limit only the newest were read: count positions back from the newest.
    first_position = 0 if limit is None else -len(records)
    return to_messages(records, session_id=session_id, first_position=first_position)


def resolve_backend(backend: str | Backend | NamedBackend, options: dict[str, Any]
                     ) -> tuple[Backend | NamedBackend, bool]:
    """The backend, or the :class:`NamedBackend` that builds it, and whether the caller owns it."""
    if isinstance(backend, str):
        return NamedBackend(backend, options), True
    if options:
        raise TypeError(
            "backend options go with a backend name; this backend instance is already "
            f"configured (got {', '.join(sorted(options))})"
        )
    # BaseBackend first: a runtime Protocol check costs microseconds per history.
    if not isinstance(backend, BaseBackend | NamedBackend | Backend):
        raise TypeError(f"backend must be a name or a Backend, not {type(backend).__name__}")
    return backend, False


class ChatHistory(_HistoryBase):
    """The chat history of one session, kept by a pluggable backend.

    While langchain-core has ``BaseChatMessageHistory`` (deprecated, to be
    removed in 2.0), ChatHistory is one; it implements its whole API itself,
    so it keeps working when that class is gone.

    Args:
        session_id: Any non-empty string without NUL characters or lone surrogates.
        backend: A backend name (an entry point in ``chathistory.backends``) or
            a backend instance to share across sessions. A named backend is
            built on first use, and the fake swap of :mod:`chathistory.testing`
            replaces it while active, even for a history built before the swap.
        **options: The named backend's options, validated now by its ``Config``.

    Raises:
        ValueError: ``session_id`` is empty, not a string, or holds NUL or a lone
            surrogate (nothing is created).
        chathistory.errors.BackendNotFoundError: no backend of that name is installed.
        chathistory.errors.ConfigError: an option is missing, unknown or of the wrong type.

    Example::

        history = ChatHistory("user-42", backend="sqlite", path="chat.sqlite3")
        history.add_messages([HumanMessage("hi"), AIMessage("hello")])
        history.get_messages(limit=1)   # [AIMessage("hello")]
    """

    def __init__(self, session_id: str, backend: str | Backend | NamedBackend = DEFAULT_BACKEND,
                 **options: Any) -> None:
        self.session_id = check_session_id(session_id)
        if type(backend) is NamedBackend and not options:  # a factory's: checked when made
            self._source: Backend | NamedBackend = backend
            self._owns_backend = False
        else:
            self._source, self._owns_backend = resolve_backend(backend, options)
        self._created: Backend | None = None  # the backend last seen created, by _ready

    def __repr__(self) -> str:
        return f"ChatHistory(session_id={self.session_id!r}, backend={self._source!r})"

    @property
    def backend(self) -> Backend:
        """The backend this history reads and writes now (the fake, under the fake swap).

        A backend named by the application is built on first use, once.
        """
        source = self._source
        return source.get() if isinstance(source, NamedBackend) else source

    def _ready(self) -> Backend:
        """:attr:`backend`, its collection created (once per instance: ensure_collection)."""
        source = self._source
        backend = source.get() if isinstance(source, NamedBackend) else source
        if backend is not self._created:
            ensure_collection(backend)
            self._created = backend
        return backend

    async def _aready(self) -> Backend:
        """Async :meth:`_ready`."""
        source = self._source
        backend = await source.aget() if isinstance(source, NamedBackend) else source
        if backend is not self._created:
            await aensure_collection(backend)
            self._created = backend
        return backend

    @property
    def messages(self) -> list[BaseMessage]:
        """Every message of the session, oldest first.

        Assigning replaces them: ``history.messages = [...]`` clears the
        session, then adds the new messages. These are two backend calls
        (``clear``, then one ``append``), not one transaction: a reader in
        between sees the session empty. The new messages are checked first,
        so one that cannot be stored fails before anything is cleared.
        """
        return self.get_messages()

    @messages.setter
    def messages(self, messages: Sequence[BaseMessage]) -> None:
        records = _records_of(messages, "messages =")
        encode_records(records)  # a RecordError now, before the session is cleared
        backend = self._ready()
        backend.clear(self.session_id)
        if records:
            backend.append(self.session_id, records)

    def get_messages(self, limit: int | None = None) -> list[BaseMessage]:
        """The session's messages, oldest first; with ``limit``, only the newest ``limit``.

        Raises:
            chathistory.errors.RecordError: a stored record is not a message (written
                by other code); the error names the session and the record's position.
        """
        if limit is not None:
            limit = check_limit(limit)
        return _read(self._ready().fetch(self.session_id, limit=limit), self.session_id, limit)

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Store ``messages`` in one backend call: all of them or, on error, none.

        Raises:
            TypeError: ``messages`` is a single message or a string, not a list,
                or holds something that is not a ``BaseMessage``.
            chathistory.errors.RecordError: a message cannot be stored as JSON.
        """
        records = _records_of(messages, "add_messages")
        if records:
            self._ready().append(self.session_id, records)

    def add_message(self, message: BaseMessage) -> None:
        """Store one message."""
        self.add_messages([message])

    def add_user_message(self, message: HumanMessage | str) -> None:
        """Store a human message, given as a message or as its text."""
        self.add_message(message if isinstance(message, HumanMessage) else HumanMessage(message))

    def add_ai_message(self, message: AIMessage | str) -> None:
        """Store an AI message, given as a message or as its text."""
        self.add_message(message if isinstance(message, AIMessage) else AIMessage(message))

    def clear(self) -> None:
        """Delete this session's messages (other sessions are untouched)."""
        backend = self._ready()
        backend.clear(self.session_id)

    async def aget_messages(self, limit: int | None = None) -> list[BaseMessage]:
        """Async :meth:`get_messages`, through the backend's async methods."""
        limit = check_limit(limit)
        backend = await self._aready()
        return _read(await backend.afetch(self.session_id, limit=limit), self.session_id, limit)

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Async :meth:`add_messages`, through the backend's async methods."""
        records = _records_of(messages, "aadd_messages")
        if not records:
            return
        backend = await self._aready()
        await backend.aappend(self.session_id, records)

    async def aclear(self) -> None:
        """Async :meth:`clear`, through the backend's async methods."""
        backend = await self._aready()
        await backend.aclear(self.session_id)

    # -- the session catalog (backends that declare KeepsCatalog) ---------------------------

    def update_session(self, *, owner: str | Unchanged | None = UNCHANGED,
                       title: str | Unchanged | None = UNCHANGED,
                       metadata: Mapping[str, Any] | None = None, replace_metadata: bool = False,
                       only_if_unset: bool = False) -> SessionSummary:
        """Set this session's owner, title or metadata; return its summary.

        ``metadata`` is merged key by key into the stored object, or replaces it
        with ``replace_metadata``. With ``only_if_unset`` an owner or a title is
        set only where none is, which is what a middleware does on every run::

            history.update_session(owner=user_id, title=first_line, only_if_unset=True)

        Raises:
            chathistory.errors.CapabilityMissingError: the backend keeps no catalog.
            ValueError: a value the catalog cannot keep, such as a lone surrogate
                (nothing is changed, nor created).
        """
        check_update(owner, title, metadata)  # before _ready creates the collection
        backend = self._ready()
        return require_catalog(backend, "keep owners, titles or metadata").update_session(
            self.session_id, owner=owner, title=title, metadata=metadata,
            replace_metadata=replace_metadata, only_if_unset=only_if_unset)

    def set_owner(self, owner: str | None, *, only_if_unset: bool = False) -> SessionSummary:
        """Set whose session this is (an application's user id); ``None`` clears it."""
        return self.update_session(owner=owner, only_if_unset=only_if_unset)

    def set_title(self, title: str | None, *, only_if_unset: bool = False) -> SessionSummary:
        """Set this session's title; ``None`` clears it."""
        return self.update_session(title=title, only_if_unset=only_if_unset)

    def update_metadata(self, metadata: Mapping[str, Any], *, replace: bool = False
                        ) -> SessionSummary:
        """Merge ``metadata`` into this session's (a small JSON object), or replace it."""
        return self.update_session(metadata=metadata, replace_metadata=replace)

    def summary(self) -> SessionSummary | None:
        """This session's summary (owner, title, metadata, times, count), or ``None``."""
        backend = self._ready()
        found = require_catalog(backend, "keep session summaries").session_summaries(
            [self.session_id])
        return found.get(self.session_id)

    async def aupdate_session(self, *, owner: str | Unchanged | None = UNCHANGED,
                              title: str | Unchanged | None = UNCHANGED,
                              metadata: Mapping[str, Any] | None = None,
                              replace_metadata: bool = False,
                              only_if_unset: bool = False) -> SessionSummary:
        """Async :meth:`update_session`."""
        check_update(owner, title, metadata)
        backend = await self._aready()
        catalog = require_catalog(backend, "keep owners, titles or metadata")
        return await catalog.aupdate_session(
            self.session_id, owner=owner, title=title, metadata=metadata,
            replace_metadata=replace_metadata, only_if_unset=only_if_unset)

    async def aset_owner(self, owner: str | None, *, only_if_unset: bool = False
                         ) -> SessionSummary:
        """Async :meth:`set_owner`."""
        return await self.aupdate_session(owner=owner, only_if_unset=only_if_unset)

    async def aset_title(self, title: str | None, *, only_if_unset: bool = False
                         ) -> SessionSummary:
        """Async :meth:`set_title`."""
        return await self.aupdate_session(title=title, only_if_unset=only_if_unset)

    async def aupdate_metadata(self, metadata: Mapping[str, Any], *, replace: bool = False
                               ) -> SessionSummary:
        """Async :meth:`update_metadata`."""
        return await self.aupdate_session(metadata=metadata, replace_metadata=replace)

    async def asummary(self) -> SessionSummary | None:
        """Async :meth:`summary`."""
        backend = await self._aready()
        found = await require_catalog(backend, "keep session summaries").asession_summaries(
            [self.session_id])
        return found.get(self.session_id)

    def __str__(self) -> str:
        """What ``BaseChatMessageHistory`` gives: one ``Human: hi`` line per message."""
        return get_buffer_string(self.messages)

    def close(self) -> None:
        """Close the backend if this history built it from a name; a shared one stays open."""
        if self._owns_backend:
            self._source.close()

    def __enter__(self) -> ChatHistory:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


class SessionHistoryFactory:
    """A ``get_session_history`` callable whose histories share one backend instance.

    Made by :func:`history_factory`. From a backend name, the backend is built
    on the first history's first use, once, and the fake swap of
    :mod:`chathistory.testing` replaces it while active, even for a factory
    built at import time.
    """

    def __init__(self, source: Backend | NamedBackend, owns_backend: bool) -> None:
        self.source = source
        self._owns_backend = owns_backend

    @property
    def backend(self) -> Backend:
        """The backend the histories use now (the fake, under the fake swap)."""
        source = self.source
        return source.get() if isinstance(source, NamedBackend) else source

    def __call__(self, session_id: str) -> ChatHistory:
        return ChatHistory(session_id, backend=self.source)

    def close(self) -> None:
        """Close the backend if the factory built it from a name."""
        if self._owns_backend:
            self.source.close()

    def __repr__(self) -> str:
        return f"SessionHistoryFactory(backend={self.source!r})"


def history_factory(backend: str | Backend | NamedBackend = DEFAULT_BACKEND, **options: Any
                    ) -> SessionHistoryFactory:
    """Return a ``get_session_history`` callable whose histories share one backend.

    Options are validated now; a named backend is built on first use, once, so
    building a history per request then costs no connection and no
    ``create_collection``. Under the fake swap (``chathistory_fake``,
    ``fake_backends()``) the factory's histories use the fake, even when the
    factory was built at import time::

        chain = RunnableWithMessageHistory(model, history_factory("sqlite", path="chat.db"))

    Raises:
        chathistory.errors.ConfigError: an option is missing, unknown or invalid.
        chathistory.errors.BackendNotFoundError: no backend of that name is installed.
    """
    resolved, owns = resolve_backend(backend, options)
    return SessionHistoryFactory(resolved, owns)

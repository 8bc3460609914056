"""ChatHistory: a LangChain chat message history that stores nothing itself."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from chathistory.backend import Backend, BaseBackend, aensure_collection, ensure_collection
from chathistory.records import to_messages, to_records
from chathistory.registry import get_backend

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


def _check_session_id(session_id: object) -> str:
    if not isinstance(session_id, str):
        raise ValueError(f"session_id must be a str, not {type(session_id).__name__}")
    if not session_id:
        raise ValueError("session_id must not be empty")
    if "\x00" in session_id:
        raise ValueError("session_id must not contain NUL characters")
    return session_id


def _check_limit(limit: object) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be None or an int >= 0, not {limit!r}")
    return limit


def _resolve_backend(backend: str | Backend, options: dict[str, Any]) -> tuple[Backend, bool]:
    if isinstance(backend, str):
        return get_backend(backend, **options), True
    if options:
        raise TypeError(
            "backend options go with a backend name; this backend instance is already "
            f"configured (got {', '.join(sorted(options))})"
        )
    # BaseBackend first: a runtime Protocol check costs microseconds per history.
    if not isinstance(backend, BaseBackend | Backend):
        raise TypeError(f"backend must be a name or a Backend, not {type(backend).__name__}")
    return backend, False


class ChatHistory(_HistoryBase):
    """The chat history of one session, kept by a pluggable backend.

    While langchain-core has ``BaseChatMessageHistory`` (deprecated, to be
    removed in 2.0), ChatHistory is one; it implements its whole API itself,
    so it keeps working when that class is gone.

    Args:
        session_id: Any non-empty string without NUL characters.
        backend: A backend name (an entry point in ``chathistory.backends``) or
            a backend instance to share across sessions.
        **options: The named backend's options, validated by its ``Config``.

    Raises:
        ValueError: ``session_id`` is empty or not a string.
        chathistory.errors.BackendNotFoundError: no backend of that name is installed.
        chathistory.errors.ConfigError: an option is missing, unknown or of the wrong type.

    Example::

        history = ChatHistory("user-42", backend="sqlite", path="chat.sqlite3")
        history.add_messages([HumanMessage("hi"), AIMessage("hello")])
        history.get_messages(limit=1)   # [AIMessage("hello")]
    """

    def __init__(self, session_id: str, backend: str | Backend = DEFAULT_BACKEND,
                 **options: Any) -> None:
        self.session_id = _check_session_id(session_id)
        self.backend, self._owns_backend = _resolve_backend(backend, options)

    def __repr__(self) -> str:
        return f"ChatHistory(session_id={self.session_id!r}, backend={self.backend!r})"

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """Every message of the session, oldest first."""
        return self.get_messages()

    def get_messages(self, limit: int | None = None) -> list[BaseMessage]:
        """The session's messages, oldest first; with ``limit``, only the newest ``limit``."""
        limit = _check_limit(limit)
        ensure_collection(self.backend)
        return to_messages(self.backend.fetch(self.session_id, limit=limit))

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Store ``messages`` in one backend call: all of them or, on error, none."""
        records = to_records(messages)
        if not records:
            return
        ensure_collection(self.backend)
        self.backend.append(self.session_id, records)

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
        ensure_collection(self.backend)
        self.backend.clear(self.session_id)

    async def aget_messages(self, limit: int | None = None) -> list[BaseMessage]:
        """Async :meth:`get_messages`, through the backend's async methods."""
        limit = _check_limit(limit)
        await aensure_collection(self.backend)
        return to_messages(await self.backend.afetch(self.session_id, limit=limit))

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Async :meth:`add_messages`, through the backend's async methods."""
        records = to_records(messages)
        if not records:
            return
        await aensure_collection(self.backend)
        await self.backend.aappend(self.session_id, records)

    async def aclear(self) -> None:
        """Async :meth:`clear`, through the backend's async methods."""
        await aensure_collection(self.backend)
        await self.backend.aclear(self.session_id)

    def __str__(self) -> str:
        return "\n".join(message.pretty_repr() for message in self.messages)

    def close(self) -> None:
        """Close the backend if this history built it from a name; a shared one stays open."""
        if self._owns_backend:
            self.backend.close()

    def __enter__(self) -> ChatHistory:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


class SessionHistoryFactory:
    """A ``get_session_history`` callable whose histories share one backend instance."""

    def __init__(self, backend: Backend, owns_backend: bool) -> None:
        self.backend = backend
        self._owns_backend = owns_backend

    def __call__(self, session_id: str) -> ChatHistory:
        return ChatHistory(session_id, backend=self.backend)

    def close(self) -> None:
        """Close the backend if the factory built it from a name."""
        if self._owns_backend:
            self.backend.close()

    def __repr__(self) -> str:
        return f"SessionHistoryFactory(backend={self.backend!r})"


def history_factory(backend: str | Backend = DEFAULT_BACKEND, **options: Any
                    ) -> SessionHistoryFactory:
    """Build one backend and return a ``get_session_history`` callable that shares it.

    Building a history per request then costs no connection and no
    ``create_collection``::

        chain = RunnableWithMessageHistory(model, history_factory("sqlite", path="chat.db"))
    """
    resolved, owns = _resolve_backend(backend, options)
    return SessionHistoryFactory(resolved, owns)

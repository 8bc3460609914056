"""Conversation memory for LangChain 1.x agents: a ``create_agent`` middleware.

Before the agent runs, :class:`ChatHistoryMiddleware` loads the session's
stored messages and puts them before the new input; after it, it stores the
messages that run added, in one ``append``. Every read and write goes to a
chathistory backend, so the transcript is one record per message in any store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, NotRequired

from langchain.agents.middleware import AgentMiddleware, AgentState
from langchain.agents.middleware.types import PrivateStateAttr
from langchain_core.messages import AIMessage, BaseMessage, RemoveMessage, ToolMessage
from langgraph.config import get_config
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.runtime import Runtime

from chathistory.backend import Backend, aensure_collection, ensure_collection
from chathistory.errors import SessionIdError
from chathistory.history import (
    DEFAULT_BACKEND,
    SessionHistoryFactory,
    check_limit,
    check_session_id,
    resolve_backend,
)
from chathistory.records import to_messages, to_records
from chathistory.registry import NamedBackend, Registry, default_registry

__all__ = ["ChatHistoryMiddleware", "ChatHistoryState", "whole_turns"]

SESSION_ID_KEY = "session_id"


class ChatHistoryState(AgentState[Any]):
    """The agent state, plus the ids of the messages that are already in the store.

    The ids are private to the middleware (neither input nor output). With a
    checkpointer they are saved with the thread, which is how a message
    restored from a checkpoint is known to be stored already.
    """

    chathistory_stored_ids: NotRequired[Annotated[list[str], PrivateStateAttr]]


def whole_turns(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """Trim a loaded history so that no tool exchange is split.

    The result starts at a human message (never mid-turn, never with a tool
    result), and holds an AI message's tool calls only together with every one
    of their results: an AI message whose calls were never all answered (a run
    that ended on an unanswered call) is dropped, and so is a tool result
    whose call is not kept.
    """
    start = next((index for index, message in enumerate(messages) if message.type == "human"),
                 len(messages))
    turns = messages[start:]
    answered = {message.tool_call_id for message in turns if isinstance(message, ToolMessage)}
    kept: list[BaseMessage] = []
    called: set[str] = set()
    for message in turns:
        if isinstance(message, AIMessage) and message.tool_calls:
            ids = {call["id"] for call in message.tool_calls if call["id"] is not None}
            if len(ids) < len(message.tool_calls) or not ids <= answered:
                continue
            called |= ids
        elif isinstance(message, ToolMessage) and message.tool_call_id not in called:
            continue
        kept.append(message)
    return kept


def _session_id(runtime: Runtime[Any]) -> str:
    """The run's session: ``context`` ``session_id`` first, else ``configurable.thread_id``."""
    context = runtime.context
    if isinstance(context, Mapping):
        session_id = context.get(SESSION_ID_KEY)
    else:
        session_id = getattr(context, SESSION_ID_KEY, None)
    if session_id is None:
        thread_id = get_config().get("configurable", {}).get("thread_id")
        session_id = None if thread_id is None else str(thread_id)
    if session_id is None:
        raise SessionIdError(
            "ChatHistoryMiddleware needs the run's session id: pass "
            "context={'session_id': '...'} (or a context_schema with a session_id field) "
            "to invoke/stream, or config={'configurable': {'thread_id': '...'}}"
        )
    try:
        return check_session_id(session_id)
    except ValueError as exc:
        raise SessionIdError(f"ChatHistoryMiddleware: {exc}") from None


class _GivenBackend:
    """A backend the middleware uses but does not own: the application's or a factory's."""

    def __init__(self, backend: Backend | NamedBackend) -> None:
        self.backend = backend

    def get(self) -> Backend:
        backend = self.backend
        return backend.get() if isinstance(backend, NamedBackend) else backend

    async def aget(self) -> Backend:
        backend = self.backend
        return await backend.aget() if isinstance(backend, NamedBackend) else backend

    def close(self) -> None:
        """A backend given by the application is the application's to close."""

    async def aclose(self) -> None:
        """A backend given by the application is the application's to close."""


class ChatHistoryMiddleware(AgentMiddleware[ChatHistoryState, Any, Any]):
    """Conversation memory for ``create_agent``, kept by a chathistory backend.

    Before the agent runs, it loads the session's stored messages (the newest
    ``window`` of them, trimmed to whole turns by :func:`whole_turns`) and
    puts them before the new input. After the agent, it stores exactly the
    messages this run added (the input, AI tool calls, tool results, the
    answer) in one ``append``: all or nothing, in order. A run that raises
    stores nothing. A message whose id is already stored (loaded this run, or
    saved with a checkpointer's thread) is not stored again.

    The session id comes from the run: ``context={"session_id": ...}`` (a dict,
    or any ``context_schema`` with a ``session_id`` field) wins; otherwise
    ``config={"configurable": {"thread_id": ...}}``.

    Args:
        backend: A backend name (with its ``**options``), a backend instance,
            or a :func:`~chathistory.history_factory` whose backend to share.
        window: Load at most the newest ``window`` messages; ``None`` loads all.
        **options: The named backend's options, validated now by its ``Config``.

    Raises:
        chathistory.errors.ConfigError: an option is missing, unknown or invalid.
        chathistory.errors.BackendNotFoundError: no backend of that name is installed.

    Example::

        agent = create_agent(model, tools, middleware=[
            ChatHistoryMiddleware("sqlite", path="chat.sqlite3", window=40)])
        agent.invoke({"messages": [HumanMessage("Hi")]}, context={"session_id": "user-42"})
    """

    state_schema = ChatHistoryState

    def __init__(self, backend: str | Backend | SessionHistoryFactory = DEFAULT_BACKEND, *,
                 window: int | None = None, registry: Registry = default_registry,
                 **options: Any) -> None:
        super().__init__()
        self.window = check_limit(window)
        self._backend: NamedBackend | _GivenBackend
        if isinstance(backend, str):
            self._backend = NamedBackend(backend, options, registry)
        elif isinstance(backend, SessionHistoryFactory):
            if options:
                raise TypeError("backend options go with a backend name, not a history_factory")
            self._backend = _GivenBackend(backend.source)
        else:
            self._backend = _GivenBackend(resolve_backend(backend, options)[0])

    def __repr__(self) -> str:
        return f"ChatHistoryMiddleware(backend={self._backend!r}, window={self.window})"

    @property
    def backend(self) -> Backend:
        """The backend this middleware reads and writes now (the fake, under the fake swap)."""
        return self._backend.get()

    def close(self) -> None:
        """Close the backend if the middleware built it from a name."""
        self._backend.close()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        await self._backend.aclose()

    # -- the hooks ----------------------------------------------------------------------

    def before_agent(self, state: ChatHistoryState, runtime: Runtime[Any]
                     ) -> dict[str, Any] | None:
        if state.get("chathistory_stored_ids"):
            return None  # the thread's checkpoint already holds its history
        session_id = _session_id(runtime)
        backend = self._backend.get()
        ensure_collection(backend)
        return _prepend(state, backend.fetch(session_id, limit=self.window))

    async def abefore_agent(self, state: ChatHistoryState, runtime: Runtime[Any]
                            ) -> dict[str, Any] | None:
        if state.get("chathistory_stored_ids"):
            return None
        session_id = _session_id(runtime)
        backend = await self._backend.aget()
        await aensure_collection(backend)
        return _prepend(state, await backend.afetch(session_id, limit=self.window))

    def after_agent(self, state: ChatHistoryState, runtime: Runtime[Any]
                    ) -> dict[str, Any] | None:
        new, stored_ids = _added(state)
        if new:
            backend = self._backend.get()
            ensure_collection(backend)
            backend.append(_session_id(runtime), to_records(new))
        return {"chathistory_stored_ids": stored_ids}

    async def aafter_agent(self, state: ChatHistoryState, runtime: Runtime[Any]
                           ) -> dict[str, Any] | None:
        new, stored_ids = _added(state)
        if new:
            backend = await self._backend.aget()
            await aensure_collection(backend)
            await backend.aappend(_session_id(runtime), to_records(new))
        return {"chathistory_stored_ids": stored_ids}


def _prepend(state: ChatHistoryState, records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The state update that puts the loaded history before the run's messages."""
    current = state["messages"]
    current_ids = {message.id for message in current}
    loaded = whole_turns(to_messages(records))
    # A stored message without an id gets one, so that it is known as stored.
    for position, message in enumerate(loaded):
        if message.id is None:
            loaded[position] = message.model_copy(update={"id": f"chathistory-{position}"})
    stored_ids = [message.id for message in loaded if message.id is not None]
    # A message passed again (the same object, or a copy with its id) appears once.
    history = [message for message in loaded if message.id not in current_ids]
    if not history:
        return {"chathistory_stored_ids": stored_ids} if stored_ids else None
    return {
        "messages": [RemoveMessage(id=REMOVE_ALL_MESSAGES), *history, *current],
        "chathistory_stored_ids": stored_ids,
    }


def _added(state: ChatHistoryState) -> tuple[list[BaseMessage], list[str]]:
    """The messages not yet stored, and every stored id once they are."""
    stored_ids = list(state.get("chathistory_stored_ids") or [])
    known = set(stored_ids)
    new: list[BaseMessage] = [message for message in state["messages"]
                              if message.id not in known]
    stored_ids.extend(message.id for message in new if message.id is not None)
    return new, stored_ids

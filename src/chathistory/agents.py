"""Conversation memory for LangChain 1.x agents: a ``create_agent`` middleware.

Before the agent runs, :class:`ChatHistoryMiddleware` loads the session's
stored messages and puts them before the new input. While it runs, it records
what happened: the input, each message the model returned and each tool
result, at the moment each is produced. After a run that succeeds, it stores
that record in one ``append``. What other middleware does to the state in
between (summaries, edits, removals) changes what the model sees, never what
is stored.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any, NotRequired, cast

from langchain.agents.middleware import AgentMiddleware, AgentState
from langchain.agents.middleware.types import (
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
    PrivateStateAttr,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)
from langgraph.config import get_config
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.runtime import Runtime
from langgraph.types import Command, Overwrite

from chathistory.backend import Backend, aensure_collection, ensure_collection
from chathistory.catalog import KeepsCatalog
from chathistory.compaction import Summarizer
from chathistory.errors import SessionIdError
from chathistory.history import (
    DEFAULT_BACKEND,
    SessionHistoryFactory,
    check_limit,
    check_session_id,
    resolve_backend,
)
from chathistory.loading import Loaded, adrive, drive, load_steps
from chathistory.records import to_records
from chathistory.registry import NamedBackend, Registry, default_registry
from chathistory.window import (
    safe_suffix,
    whole_turns,
)

__all__ = [
    "ChatHistoryMiddleware",
    "ChatHistoryState",
    "first_human_title",
    "safe_suffix",
    "whole_turns",
]

SESSION_ID_KEY = "session_id"
OWNER_KEY = "user_id"
TITLE_CHARS = 80

Titler = Callable[[Sequence[BaseMessage]], str | None]
"""Makes a new session's title from its first run's messages (None: no title)."""


def first_human_title(messages: Sequence[BaseMessage]) -> str | None:
    """The first human message's text, on one line, cut at a word within 80 characters."""
    text = next((" ".join(message.text.split()) for message in messages
                 if message.type == "human" and message.text.strip()), None)
    if text is None or len(text) <= TITLE_CHARS:
        return text
    cut = text[:TITLE_CHARS - 1].rsplit(" ", 1)[0] or text[:TITLE_CHARS - 1]
    return cut + "\u2026"


class ChatHistoryState(AgentState[Any]):
    """The agent state, plus what the middleware keeps between its hooks.

    All private to the middleware (neither input nor output). With a
    checkpointer they are saved with the thread: that is how a run resumed
    after an interrupt still stores its whole turn, and how a thread reused
    for another session is noticed.
    """

    chathistory_session: NotRequired[Annotated[str, PrivateStateAttr]]
    """The session whose history the state's messages hold."""
    chathistory_seen: NotRequired[Annotated[list[str], PrivateStateAttr]]
    """The ids of the state's messages when the last run ended: not new input."""
    chathistory_run: NotRequired[Annotated[list[AnyMessage], PrivateStateAttr, operator.add]]
    """What this run produced so far, in order: the transcript to store."""
    chathistory_summary: NotRequired[Annotated[str | None, PrivateStateAttr]]
    """The summary of what is older than the loaded history, for the model's calls."""
    chathistory_new_session: NotRequired[Annotated[bool, PrivateStateAttr]]
    """The session held no message when the run started: its append is the first write."""
    chathistory_stored_ids: NotRequired[Annotated[list[str], PrivateStateAttr]]
    """What version 0.1 kept instead of ``chathistory_seen``: read once, then emptied."""


def _from_context(runtime: Runtime[Any], key: str) -> Any:
    """A field of the run's ``context``: a dict's key, or any context_schema's attribute."""
    context = runtime.context
    if isinstance(context, Mapping):
        return context.get(key)
    return getattr(context, key, None)


def _session_id(runtime: Runtime[Any]) -> str:
    """The run's session: ``context`` ``session_id`` first, else ``configurable.thread_id``."""
    session_id = _from_context(runtime, SESSION_ID_KEY)
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


# -- what a run produced ------------------------------------------------------------------


def _with_id(message: BaseMessage) -> BaseMessage:
    """The message with an id: the record of a run tells messages apart by id."""
    if message.id is None:
        message.id = str(uuid.uuid4())
    return message


def _answers(run: list[AnyMessage], messages: Sequence[AnyMessage]) -> list[AnyMessage] | None:
    """``run`` with the answers to its calls that another middleware wrote into ``messages``.

    A human's rejection (``HumanInTheLoopMiddleware``) or a limit's refusal
    (``ToolCallLimitMiddleware``) answers one of the run's tool calls without a
    tool running. It is kept right after the call it answers, as in the
    state, so every stored call has its answer. ``None`` if there are none.
    """
    recorded = {message.id for message in run}
    answered = {message.tool_call_id for message in run if isinstance(message, ToolMessage)}
    calls = {call["id"]: message.id for message in run if isinstance(message, AIMessage)
             for call in message.tool_calls}
    found = [message for message in messages
             if isinstance(message, ToolMessage) and message.id not in recorded
             and message.tool_call_id in calls and message.tool_call_id not in answered]
    if not found:
        return None
    merged = list(run)
    for answer in found:
        caller = next(index for index, message in enumerate(merged)
                      if message.id == calls[answer.tool_call_id])
        merged.insert(caller + 1, answer)
    return merged


def _tool_result(result: ToolMessage | Command[Any]) -> ToolMessage | Command[Any]:
    """A tool's result, carrying the record of what the tool produced into the state."""
    if isinstance(result, ToolMessage):
        message = _with_id(result)
        return Command(update={"messages": [message], "chathistory_run": [message]})
    if isinstance(result.update, dict) and result.graph is None:
        produced = [_with_id(message) for message in result.update.get("messages", [])
                    if isinstance(message, BaseMessage) and not isinstance(message, RemoveMessage)]
        if produced:
            return Command(update={**result.update, "chathistory_run": produced},
                           goto=result.goto, resume=result.resume)
    return result


def _with_summary(request: ModelRequest[Any]) -> ModelRequest[Any]:
    summary = request.state.get("chathistory_summary")
    if not summary:
        return request
    text = f"Summary of the earlier conversation:\n{summary}"
    if request.system_message is not None:
        text = f"{request.system_message.text}\n\n{text}"
    return request.override(system_message=SystemMessage(text))


def _model_result(request: ModelRequest[Any], response: ModelResponse[Any] | AIMessage
                  ) -> ExtendedModelResponse[Any]:
    """The model's response, carrying the record of what the model produced into the state.

    The record also takes in the answers other middleware gave to the run's
    calls since the last model call (see :func:`_answers`): here, where the
    state is at hand anyway, rather than in a hook of its own.
    """
    if isinstance(response, AIMessage):
        response = ModelResponse(result=[response])
    produced = [_with_id(message) for message in response.result]
    state = cast("ChatHistoryState", request.state)
    merged = _answers(state.get("chathistory_run") or [], state["messages"])
    record: Any = produced if merged is None else Overwrite([*merged, *produced])
    return ExtendedModelResponse(model_response=response,
                                 command=Command(update={"chathistory_run": record}))


class ChatHistoryMiddleware(AgentMiddleware[ChatHistoryState, Any, Any]):
    """Conversation memory for ``create_agent``, kept by a chathistory backend.

    **What it stores.** After a run that succeeds, one ``append`` (all or
    nothing, in order) of what happened in that run: the user's input, each
    message the model returned, and each message a tool produced, recorded as
    it was produced, plus any answer another middleware gave to one of the
    run's tool calls (a human's rejection, a limit's refusal). Messages that
    other middleware synthesizes for the model (a summary, an edited context,
    a limit's closing notice) are not turns and are not stored. A message
    removed from the state, by a middleware or a tool's ``Command``, is still
    stored: it happened. A run that raises stores nothing.

    **What it loads.** Before the agent runs, the session's newest ``window``
    messages (see :func:`chathistory.window.safe_suffix` for which of them),
    put before the new input. With ``summarizer``, the model also sees a
    summary of everything older, kept beside the transcript and recomputed
    only when ``summarize_every`` more messages have left the window.

    **Owners and titles.** On a backend that keeps a session catalog
    (:class:`~chathistory.catalog.KeepsCatalog`), the first write of a session
    sets its owner from the run's ``context`` ``user_id`` (a dict key or a
    ``context_schema`` field), and its title if ``title`` is given.

    **Sessions never cross.** The session id comes from
    ``context={"session_id": ...}`` (a dict, or any ``context_schema`` with a
    ``session_id`` field), else ``config={"configurable": {"thread_id": ...}}``.
    With a checkpointer, a thread that held another session's messages has
    them replaced by this session's history before the model is called.

    Args:
        backend: A backend name (with its ``**options``), a backend instance,
            or a :func:`~chathistory.history_factory` whose backend to share.
        window: Load at most the newest ``window`` messages; ``None`` loads all.
        summarizer: A chat model (the application's own) that summarizes what
            is older than the window. Needs ``window``.
        summarize_every: Summarize again once this many messages have left the
            window since the last summary.
        title: On a backend that keeps a session catalog, give a new session a
            title: ``True`` takes its first human message (cut to 80
            characters), or pass a function of the first run's messages.
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
                 window: int | None = None, summarizer: BaseChatModel | None = None,
                 summarize_every: int = 40, title: bool | Titler = False,
                 registry: Registry = default_registry, **options: Any) -> None:
        super().__init__()
        if not isinstance(title, bool) and not callable(title):
            raise TypeError("title must be True, False or a function of the first run's "
                            f"messages, not {type(title).__name__}")
        self.titler: Titler | None = (first_human_title if title is True
                                      else title if callable(title) else None)
        self.window = check_limit(window, "window")
        if summarizer is not None and self.window is None:
            raise ValueError("a summarizer needs a window: it summarizes what is older than it")
        self.summarizer = (None if summarizer is None
                           else Summarizer(summarizer, every=summarize_every))
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

    # -- before the agent: load, and start the run's record --------------------------------

    def before_agent(self, state: ChatHistoryState, runtime: Runtime[Any]
                     ) -> dict[str, Any] | None:
        session_id = _session_id(runtime)
        if _holds(state, session_id):
            return _start_run(state, session_id, None)
        backend = self._backend.get()
        ensure_collection(backend)
        loaded = drive(load_steps(session_id, self.window, self.summarizer), backend,
                        self.summarizer)
        return _start_run(state, session_id, loaded)

    async def abefore_agent(self, state: ChatHistoryState, runtime: Runtime[Any]
                            ) -> dict[str, Any] | None:
        session_id = _session_id(runtime)
        if _holds(state, session_id):
            return _start_run(state, session_id, None)
        backend = await self._backend.aget()
        await aensure_collection(backend)
        loaded = await adrive(load_steps(session_id, self.window, self.summarizer), backend,
                               self.summarizer)
        return _start_run(state, session_id, loaded)

    # -- during the run: record what the model and the tools produce ------------------------

    def wrap_model_call(self, request: ModelRequest[Any],
                        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]]
                        ) -> ExtendedModelResponse[Any]:
        return _model_result(request, handler(_with_summary(request)))

    async def awrap_model_call(
            self, request: ModelRequest[Any],
            handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]]
    ) -> ExtendedModelResponse[Any]:
        return _model_result(request, await handler(_with_summary(request)))

    def wrap_tool_call(self, request: ToolCallRequest,
                       handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]]
                       ) -> ToolMessage | Command[Any]:
        return _tool_result(handler(request))

    async def awrap_tool_call(
            self, request: ToolCallRequest,
            handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]]
    ) -> ToolMessage | Command[Any]:
        return _tool_result(await handler(request))

    # -- after the agent: store the run's record in one append -----------------------------

    def after_agent(self, state: ChatHistoryState, runtime: Runtime[Any]
                    ) -> dict[str, Any] | None:
        transcript = _transcript(state)
        if transcript:
            session_id = _session_id(runtime)
            backend = self._backend.get()
            ensure_collection(backend)
            described = self._description(state, runtime, backend, transcript)
            if described:
                # Before the append: a crash between the two leaves an empty entry
                # with its owner, never messages without one.
                cast("KeepsCatalog", backend).update_session(session_id, **described)
            backend.append(session_id, to_records(transcript))
        return _end_run(state)

    async def aafter_agent(self, state: ChatHistoryState, runtime: Runtime[Any]
                           ) -> dict[str, Any] | None:
        transcript = _transcript(state)
        if transcript:
            session_id = _session_id(runtime)
            backend = await self._backend.aget()
            await aensure_collection(backend)
            described = self._description(state, runtime, backend, transcript)
            if described:
                await cast("KeepsCatalog", backend).aupdate_session(session_id, **described)
            await backend.aappend(session_id, to_records(transcript))
        return _end_run(state)

    def _description(self, state: ChatHistoryState, runtime: Runtime[Any], backend: Backend,
                     transcript: Sequence[BaseMessage]) -> dict[str, Any]:
        """The owner and title a new session gets, where the backend keeps a catalog."""
        if not state.get("chathistory_new_session") or not isinstance(backend, KeepsCatalog):
            return {}
        described: dict[str, Any] = {}
        owner = _from_context(runtime, OWNER_KEY)
        if owner is not None:
            described["owner"] = str(owner)
        if self.titler is not None and (title := self.titler(transcript)):
            described["title"] = title
        return {**described, "only_if_unset": True} if described else {}


def _holds(state: ChatHistoryState, session_id: str) -> bool:
    """Whether the state already holds this session's history (a checkpointer's thread)."""
    return state.get("chathistory_session") == session_id


def _start_run(state: ChatHistoryState, session_id: str, loaded: Loaded | None
               ) -> dict[str, Any]:
    """The state update that starts a run: its input recorded, the history put before it."""
    # What the last run left in the state is not input: with a checkpointer it is
    # this session's history, or another session's, which the history replaces.
    seen = set(state.get("chathistory_seen") or state.get("chathistory_stored_ids") or [])
    current = [message for message in state["messages"] if message.id not in seen]
    history = [] if loaded is None else loaded.history
    history_ids = {message.id for message in history}
    # A message passed again (the same object, or a copy with its id) appears once.
    new_input = [message for message in current if message.id not in history_ids]
    update: dict[str, Any] = {"chathistory_session": session_id,
                              "chathistory_run": Overwrite(new_input)}
    if loaded is not None:
        update["chathistory_summary"] = loaded.summary
        update["chathistory_new_session"] = loaded.empty
        update["messages"] = [RemoveMessage(id=REMOVE_ALL_MESSAGES), *history, *new_input]
    return update


def _transcript(state: ChatHistoryState) -> list[AnyMessage]:
    """The run's record, each message as it last stood in the state, if it is still there.

    So a note another middleware added to a tool result (``HumanInTheLoopMiddleware``
    says which call really ran) is stored whatever the order of the middleware;
    a message that was removed is stored as it was produced.
    """
    run = state.get("chathistory_run") or []
    current = {message.id: message for message in state["messages"]}
    return [current.get(message.id, message)
            for message in _answers(run, state["messages"]) or run]


def _end_run(state: ChatHistoryState) -> dict[str, Any]:
    update = {"chathistory_seen": [message.id for message in state["messages"]
                                   if message.id is not None],
              "chathistory_run": Overwrite([]), "chathistory_new_session": False}
    if state.get("chathistory_stored_ids"):
        update["chathistory_stored_ids"] = []
    return update

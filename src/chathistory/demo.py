"""The README's main job: a conversation through RunnableWithMessageHistory on SQLite."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory

from chathistory.history import history_factory

__all__ = ["QUESTIONS", "run_conversation"]

QUESTIONS = [
    "Hi! My name is Ada. Can you remember it?",
    "What did I tell you my name was?",
    "Thanks. Please summarise our chat in one line.",
]

_ANSWERS = [
    "Nice to meet you, Ada. I'll keep it in this chat's history.",
    "You told me your name is Ada.",
    "Ada introduced herself and checked that I remembered; I did.",
]


def run_conversation(session_id: str, path: str, say: Callable[[str], None] = print) -> None:
    """Run three turns; the history between turns lives only in the SQLite file at ``path``."""
    model = GenericFakeChatModel(messages=iter(AIMessage(answer) for answer in _ANSWERS))
    prompt = ChatPromptTemplate.from_messages([
        ("system", "You are a helpful assistant."),
        MessagesPlaceholder("history"),
        ("human", "{question}"),
    ])
    prompt_sizes: list[int] = []

    def count_prompt(prompt_value: PromptValue) -> PromptValue:
        prompt_sizes.append(len(prompt_value.to_messages()))
        return prompt_value

    get_session_history = history_factory("sqlite", path=path)
    with warnings.catch_warnings():
        # langchain-core steers new code to LangGraph; this demo shows the classic API.
        warnings.simplefilter("ignore", DeprecationWarning)
        chain = _with_history(prompt | RunnableLambda(count_prompt) | model,
                              get_session_history)
    try:
        for question in QUESTIONS:
            answer = chain.invoke({"question": question},
                                  config={"configurable": {"session_id": session_id}})
            seen = len(get_session_history(session_id).get_messages())
            say(f"  you: {question}")
            say(f"  bot: {answer.content}")
            say(f"       [the model was sent {prompt_sizes[-1]} messages; {seen} are stored]")
    finally:
        get_session_history.close()


def _with_history(runnable: Any, get_session_history: Any) -> RunnableWithMessageHistory:
    return RunnableWithMessageHistory(runnable, get_session_history,
                                      input_messages_key="question",
                                      history_messages_key="history")

"""Long conversations: our compaction against SummarizationMiddleware on a checkpointer.

Run: .venv/bin/python tests/benchmarks/bench_compaction.py [--turns 300]

One conversation for both contenders, in one process: ``create_agent`` with
one tool and a scripted model (no network), TURNS turns of human -> AI tool
call -> tool result -> AI answer on one session, and the same fake summarizer
(a chat model that counts its calls and answers a summary of a fixed size).

- ``ChatHistoryMiddleware("sqlite", window=40, summarizer=..., summarize_every=40)``
  with no checkpointer: one summary per 40 messages that leave the window.
- ``SummarizationMiddleware(trigger=("messages", 80), keep=("messages", 40))``
  on a ``SqliteSaver``: the same trigger, in the way LangChain documents it.

Reported: the messages and characters sent to the model on each turn's first
model call (turns 41-60 against the last 20), the summarizer's calls, the
bytes each store holds, and how many of the messages the user and the agent
produced each store still holds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_agents import lookup_order, model, question, sqlite_measure
from langchain.agents import create_agent
from langchain.agents.middleware import SummarizationMiddleware
from langchain_core.messages import AIMessage, BaseMessage

from chathistory import ChatHistory
from chathistory.agents import ChatHistoryMiddleware
from chathistory.testing.chat_models import ToolCallingFakeModel

WINDOW = EVERY = 40
SUMMARY = ("The user has been asking about the status of a series of orders, A-1001 onwards; "
           "each one shipped from the Lyon warehouse on a Monday, with a tracking number, a "
           "Thursday morning delivery window, a signature required and one item back-ordered. "
           "The assistant looked each order up with the lookup_order tool and reported it. ")


def characters(messages: list[BaseMessage]) -> int:
    return sum(len(message.text) + len(str(getattr(message, "tool_calls", "")))
               for message in messages)


@dataclass
class Outcome:
    name: str
    prompts: list[list[BaseMessage]] = field(default_factory=list)
    summaries: int = 0
    bytes: int = 0
    kept: int = 0


def counting_summarizer(outcome: Outcome) -> ToolCallingFakeModel:
    def summarize(messages: list[BaseMessage]) -> AIMessage:
        outcome.summaries += 1
        return AIMessage(f"{SUMMARY}(summary {outcome.summaries})")
    return ToolCallingFakeModel(respond=summarize)


def watched_model(outcome: Outcome) -> ToolCallingFakeModel:
    scripted = model()
    respond = scripted.respond

    def watching(messages: list[BaseMessage]) -> AIMessage:
        if messages[-1].type == "human":  # a turn's first model call
            outcome.prompts.append(list(messages))
        return respond(messages)

    scripted.respond = watching
    return scripted


def ours(folder: Path, turns: int) -> Outcome:
    outcome = Outcome("ChatHistoryMiddleware, window=40, summarize_every=40")
    path = str(folder / "ours.sqlite3")
    middleware = ChatHistoryMiddleware("sqlite", path=path, window=WINDOW,
                                       summarizer=counting_summarizer(outcome),
                                       summarize_every=EVERY)
    agent = create_agent(watched_model(outcome), [lookup_order], middleware=[middleware])
    for turn in range(1, turns + 1):
        agent.invoke(question(turn), context={"session_id": "bench"})
    middleware.close()
    outcome.bytes = sqlite_measure(path, ["message_store"])()[1]
    with ChatHistory("bench", backend="sqlite", path=path) as history:
        outcome.kept = len(history.messages)
    return outcome


def checkpointer(folder: Path, turns: int) -> Outcome:
    from langgraph.checkpoint.sqlite import SqliteSaver

    outcome = Outcome("SummarizationMiddleware(80 -> keep 40) + SqliteSaver")
    path = str(folder / "saver.sqlite3")
    summarization = SummarizationMiddleware(model=counting_summarizer(outcome),
                                            trigger=("messages", 2 * WINDOW),
                                            keep=("messages", WINDOW))
    manager: AbstractContextManager[Any] = SqliteSaver.from_conn_string(path)
    with manager as saver:
        saver.setup()
        agent = create_agent(watched_model(outcome), [lookup_order],
                             middleware=[summarization], checkpointer=saver)
        config: Any = {"configurable": {"thread_id": "bench"}}
        for turn in range(1, turns + 1):
            agent.invoke(question(turn), config=config)
        state = agent.get_state(config).values
        outcome.kept = sum(1 for message in state["messages"]
                           if message.additional_kwargs.get("lc_source") != "summarization")
    outcome.bytes = sqlite_measure(path, ["checkpoints", "writes"])()[1]
    return outcome


def report(outcome: Outcome, turns: int) -> None:
    early = outcome.prompts[WINDOW:WINDOW + 20]
    late = outcome.prompts[-20:]
    produced = 4 * turns
    early_chars = statistics.mean(characters(prompt) for prompt in early)
    late_chars = statistics.mean(characters(prompt) for prompt in late)
    print(f"{outcome.name}")
    print(f"  sent to the model, turns 41-60: {statistics.mean(map(len, early)):.1f} messages, "
          f"{early_chars:,.0f} characters; turns {turns - 19}-{turns}: "
          f"{statistics.mean(map(len, late)):.1f} messages, {late_chars:,.0f} characters "
          f"({late_chars / early_chars:.2f}x; target <= 1.2x)")
    per_call = (produced - WINDOW) / max(outcome.summaries, 1)
    print(f"  summarizer calls: {outcome.summaries} (one per {per_call:.0f} older messages; "
          f"target: at most one per {EVERY})")
    print(f"  store: {outcome.bytes / 2**20:.2f} MiB; holds {outcome.kept} of the {produced} "
          f"messages produced ({100 * outcome.kept / produced:.0f}%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=300)
    turns = parser.parse_args().turns
    contenders: list[Callable[[Path, int], Outcome]] = [ours, checkpointer]
    print(f"create_agent, one tool, {turns} turns on one session, window {WINDOW}, "
          f"a summary per {EVERY} older messages\n")
    with tempfile.TemporaryDirectory() as directory:
        for contender in contenders:
            report(contender(Path(directory), turns), turns)


if __name__ == "__main__":
    main()

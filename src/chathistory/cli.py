"""The ``chathistory`` command."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import click
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from chathistory.backends.sqlite import default_path
from chathistory.errors import ChatHistoryError
from chathistory.history import DEFAULT_BACKEND, ChatHistory
from chathistory.registry import available_backends

__all__ = ["main"]


def _parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--option")
        options[name.strip()] = value
    return options


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="chathistory")
def main() -> None:
    """Chat histories for LangChain, on pluggable storage backends."""


@main.command()
def backends() -> None:
    """List the installed backends, their distributions and any load error."""
    rows = available_backends()
    width = max([len(row.name) for row in rows] + [7])
    click.echo(f"{'BACKEND':<{width}}  DISTRIBUTION")
    for row in rows:
        status = f"  ERROR: {row.error}" if row.error else ""
        click.echo(f"{row.name:<{width}}  {row.distribution} {row.version}{status}")


@main.command()
@click.argument("session_id")
@click.option("--backend", "-b", default=DEFAULT_BACKEND, show_default=True,
              help="Backend name (see `chathistory backends`).")
@click.option("--option", "-o", "option_pairs", multiple=True, metavar="NAME=VALUE",
              help="A backend option, e.g. -o path=chat.sqlite3. Repeatable.")
@click.option("--limit", "-n", type=click.IntRange(min=0), default=None,
              help="Show only the newest N messages.")
def show(session_id: str, backend: str, option_pairs: tuple[str, ...], limit: int | None
         ) -> None:
    """Print the messages of SESSION_ID, oldest first."""
    options = _parse_options(option_pairs)
    try:
        with ChatHistory(session_id, backend=backend, **options) as history:
            messages = history.get_messages(limit=limit)
    except (ChatHistoryError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if not messages:
        click.echo(f"(no messages in session {session_id!r})", err=True)
    for message in messages:
        click.echo(f"{message.type:>6}: {describe(message)}")


def describe(message: BaseMessage) -> str:
    """One readable line: the text, other content blocks by kind, tool calls with arguments."""
    parts = []
    if isinstance(message.content, str):
        parts.append(message.content)
    else:
        for block in message.content:
            if isinstance(block, str):
                parts.append(block)
            elif block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            else:
                parts.append(f"[{block.get('type', 'block')}]")
    if isinstance(message, AIMessage):
        for call in message.tool_calls:
            arguments = ", ".join(f"{name}={json.dumps(value, ensure_ascii=False)}"
                                  for name, value in call["args"].items())
            parts.append(f"-> {call['name']}({arguments})")
    if isinstance(message, ToolMessage) and message.name:
        parts.insert(0, f"[{message.name}]")
    return " ".join(part for part in parts if part)


@main.command()
@click.option("--path", default=None, help="SQLite file (default: the sqlite backend's default).")
@click.option("--session", "session_id", default=None, help="Session id (default: a new one).")
def demo(path: str | None, session_id: str | None) -> None:
    """Run a short agent conversation on SQLite, then read it back from a second process."""
    from chathistory.demo import run_conversation

    path = path or default_path()
    session_id = session_id or f"demo-{uuid.uuid4().hex[:8]}"
    click.echo(f"Conversation {session_id!r}, stored in {path}:")
    try:
        run_conversation(session_id, path, say=click.echo)
    except (ChatHistoryError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    command = [sys.executable, "-m", "chathistory", "show", session_id, "-o", f"path={path}"]
    click.echo("\nA second process reads it back: chathistory show "
               f"{session_id} -o path={path}")
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        raise click.ClickException("the second process could not read the history back")

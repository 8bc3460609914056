"""The ``chathistory`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from chathistory.catalog_commands import register as register_catalog_commands
from chathistory.errors import ChatHistoryError
from chathistory.history import DEFAULT_BACKEND, check_session_id
from chathistory.records import to_messages
from chathistory.registry import LoadPluginsWarning, available_backends, default_registry
from chathistory.session_commands import TEXT, json_option, one_line, open_backend, register

__all__ = ["main"]


@contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Show chathistory's own warnings (a bad CHATHISTORY_LOAD_PLUGINS) as one line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LoadPluginsWarning)
        try:
            yield
        finally:
            for warning in caught:
                if issubclass(warning.category, LoadPluginsWarning):
                    click.echo(f"Warning: {warning.message}", err=True)
                else:
                    warnings.warn_explicit(warning.message, warning.category,
                                           warning.filename, warning.lineno)


class _Commands(click.Group):
    """The command group; a reader that stops reading (``export | head``) ends it quietly."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # Python's own advice: point stdout at devnull, so the flush at exit
            # does not fail again, and end with success: the reader had enough.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(0)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="chathistory")
def main() -> None:
    """Chat histories for LangChain, on pluggable storage backends.

    Every command on a store takes it as -b BACKEND (default sqlite) and its
    options as -o NAME=VALUE, e.g. -b postgres -o conninfo=postgresql://db/chat
    -o table=chat. An unknown option's error lists the backend's options;
    docs/backends/<name>.md explains each.
    """


@main.command()
@json_option
def backends(as_json: bool) -> None:
    """List the installed backends, their distributions, and whether each can be used.

    A backend whose plugin fails to import, or whose driver is not installed, is marked
    broken, with the reason.
    """
    with _warnings_as_lines():
        rows = available_backends()
        statuses = [_status(row.name, row.error) for row in rows]
    if as_json:
        for row, status in zip(rows, statuses, strict=True):
            click.echo(json.dumps({"backend": row.name, "distribution": row.distribution,
                                   "version": row.version, "ok": status == "ok",
                                   "status": status}, ensure_ascii=False))
        return
    width = max([len(row.name) for row in rows] + [7])
    sources = [f"{row.distribution} {row.version}".strip() for row in rows]
    source_width = max([len(source) for source in sources] + [12])
    click.echo(f"{'BACKEND':<{width}}  {'DISTRIBUTION':<{source_width}}  STATUS")
    for row, source, status in zip(rows, sources, statuses, strict=True):
        click.echo(f"{row.name:<{width}}  {source:<{source_width}}  {status}")


def _status(name: str, load_error: str | None) -> str:
    """``ok``, or ``broken: <reason>`` when the plugin or the backend class fails to load."""
    if load_error is not None:
        return f"broken: {load_error}"
    try:
        default_registry.check_requirements(name)
    except ChatHistoryError as exc:
        return f"broken: {exc}"
    return "ok"


@main.command()
@click.argument("session_id", type=TEXT)
@click.option("--backend", "-b", default=DEFAULT_BACKEND, show_default=True,
              help="Backend name (see `chathistory backends`).")
@click.option("--option", "-o", "option_pairs", multiple=True, metavar="NAME=VALUE",
              help="A backend option, e.g. -o path=chat.sqlite3 or -o ttl=600 (converted to "
                   "the option's type). Repeatable.")
@click.option("--limit", "-n", type=click.IntRange(min=0), default=None,
              help="Show only the newest N messages.")
@json_option
def show(session_id: str, backend: str, option_pairs: tuple[str, ...], limit: int | None,
         as_json: bool) -> None:
    """Print the messages of SESSION_ID, oldest first. Creates nothing.

    With --json, one stored record (a JSON object) per line.
    """
    total: int | None = None
    try:
        with _warnings_as_lines():
            store = open_backend(backend, option_pairs)
        try:
            # Reading only: no create_collection, so a misspelt path creates nothing.
            records = store.fetch(check_session_id(session_id), limit=limit)
            if limit == 0:
                total = len(store.fetch(session_id))
            messages = to_messages(records, session_id=session_id,
                                   first_position=0 if limit is None else -len(records))
        finally:
            store.close()
    except (ChatHistoryError, ValueError, TypeError) as exc:
        raise click.ClickException(one_line(exc)) from None
    if total:
        click.echo(f"(showed none of the {total} messages in session {session_id!r}: "
                   "--limit 0)", err=True)
    elif not messages:
        click.echo(f"(no messages in session {session_id!r})", err=True)
    for message, record in zip(messages, records, strict=True):
        if as_json:
            click.echo(json.dumps(record, ensure_ascii=False))
        else:
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

    path = path or _default_path()
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


def _default_path() -> str:
    """The default backend's default ``path``, from its Config: no backend module named here."""
    config = default_registry.backend_class(DEFAULT_BACKEND).Config
    return str(config.model_fields["path"].get_default(call_default_factory=True))


register(main)
register_catalog_commands(main)

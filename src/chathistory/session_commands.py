"""The commands that treat sessions as data: sessions, clear, export, import, copy, prune.

Each takes the backend as ``-b NAME -o NAME=VALUE`` (``copy`` names its target
with ``--to NAME -O NAME=VALUE``), prints data as text or, with ``--json``, as
JSON, and reports a failure as one line on stderr with exit status 1.
The read-only ones (``sessions``, ``export``) create nothing. The long ones
show a progress bar on a terminal (:func:`progress_bar`).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import IO, Any, TypeVar

import click

from chathistory.backend import Backend, ensure_collection, validate_options
from chathistory.capabilities import (
    ListsSessions,
    PrunesSessions,
    SessionInfo,
    TracksWriteTimes,
)
from chathistory.catalog import (
    KeepsCatalog,
    SessionSummary,
    list_conversations,
    require_catalog,
)
from chathistory.errors import CapabilityMissingError, ChatHistoryError, CollectionMissingError
from chathistory.history import DEFAULT_BACKEND
from chathistory.registry import default_registry
from chathistory.transfer import (
    CHUNK,
    CopyReport,
    copy_sessions,
    count_records,
    export_sessions,
    import_sessions,
    iter_sessions,
    sessions_to_transfer,
)

__all__ = [
    "TEXT",
    "count_creating_nothing",
    "counted_run",
    "metadata_pairs",
    "owner_option",
    "progress_bar",
    "quiet_option",
    "register",
]

T = TypeVar("T")

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class _Utf8Text(click.types.StringParamType):
    """Text that is valid UTF-8: a session id, an owner, a title, a metadata pair.

    Bytes that are not UTF-8 on the command line (``erase $'\\xff'``) reach Python as
    surrogate escapes, which no store can encode: a usage error naming the argument,
    not the codec's error from deep inside a backend.
    """

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> str:
        text = super().convert(value, param, ctx)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            try:
                shown = repr(text.encode("utf-8", "surrogateescape"))  # the bytes given
            except UnicodeEncodeError:  # a lone surrogate that stands for no byte
                shown = ascii(text)
            self.fail(f"{shown} is not valid UTF-8 text", param, ctx)
        return text


TEXT = _Utf8Text()


def backend_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """``-b/--backend`` and ``-o/--option``, the same on every command."""
    function = click.option(
        "--option", "-o", "option_pairs", multiple=True, metavar="NAME=VALUE",
        help="A backend option, e.g. -o path=chat.sqlite3 (converted to the option's type). "
             "Repeatable.")(function)
    return click.option("--backend", "-b", default=DEFAULT_BACKEND, show_default=True,
                        help="Backend name (see `chathistory backends`).")(function)


def json_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON instead of text.")(function)


def owner_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--owner``: an application's user id; empty is a usage error, not "everyone"."""
    def check(context: click.Context, parameter: click.Parameter, value: str | None
              ) -> str | None:
        if value == "":
            raise click.BadParameter("must not be empty (is a variable unset?)")
        return value

    return click.option("--owner", type=TEXT, default=None, callback=check, help=help_text)


def quiet_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--quiet", "-q", is_flag=True,
                        help="No progress bar (there is none when stderr is not a "
                             "terminal).")(function)


def progress_bar(total: int | None, unit: str, quiet: bool = False
                 ) -> AbstractContextManager[Any]:
    """A tqdm bar on stderr; off with ``--quiet`` and when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, disable=quiet or not sys.stderr.isatty(),
                file=sys.stderr, dynamic_ncols=True)


class Tally:
    """What a long command has done so far: sessions (its bar's count) and messages.

    ``writing`` says its first chunk is under way (``import`` checks its lines first).
    """

    def __init__(self, bar: Any, writing: bool = True) -> None:
        self.bar = bar
        self.sessions = 0
        self.messages = 0
        self.writing = writing

    def advance(self, sessions: int, messages: int) -> None:
        self.sessions += sessions
        self.messages += messages
        self.bar.set_postfix(messages=self.messages, refresh=False)
        self.bar.update(sessions)

    def done(self, verb: str, whose: str = "") -> str | None:
        """``copied 200 sessions (600 messages)``; None before the first chunk is done."""
        if not self.sessions:
            return None
        return (f"{verb} {plural(self.sessions, 'session')}{whose} "
                f"({plural(self.messages, 'message')})")

    def under_way(self, verb: str, whose: str = "") -> str | None:
        """Ctrl-C in the first chunk: none counted, though it may be done (all or part of
        it) by then; None while nothing is written yet."""
        if not self.writing:
            return None
        return f"{verb} 0 sessions{whose} (the first chunk was under way: it may be {verb} too)"


@contextmanager
def said_when_stopped(done: Callable[[], str | None], rerun: str,
                      under_way: Callable[[], str | None] = lambda: None) -> Iterator[None]:
    """Stopped midway (Ctrl-C, or a failure), a command ends with one line, exit status 1.

    It says what stopped it, what ``done()`` says it had done by then, and what
    ``rerun`` (the same command run again) does. Where ``done()`` returns None
    (nothing was done yet), a Ctrl-C says what ``under_way()`` says instead (a chunk
    may be written without being counted yet); where that is None too, or on a
    failure, the stop is shown as it is.
    """
    try:
        with failures_as_one_line():
            yield
    except (click.ClickException, KeyboardInterrupt) as stopped:
        did = done()
        if did is None and isinstance(stopped, KeyboardInterrupt):
            did = under_way()
        if did is None:
            raise
        cause = "interrupted" if isinstance(stopped, KeyboardInterrupt) else stopped.message
        raise click.ClickException(f"{cause}; by then it had {did}; {rerun}") from None


@contextmanager
def counted_run(total: int | None, verb: str, rerun: str, quiet: bool, whose: str = "",
                writing: bool = True) -> Iterator[Tally]:
    """A long command's progress bar of sessions, messages beside it; stopped midway, the
    command says how many it had ``verb`` and what ``rerun`` does (:func:`said_when_stopped`).
    Without ``writing``, the command sets ``tally.writing`` when its first chunk begins.
    """
    tally = Tally(None, writing)
    with said_when_stopped(partial(tally.done, verb, whose), rerun,
                           partial(tally.under_way, verb, whose)), \
            progress_bar(total, "session", quiet) as bar:
        tally.bar = bar
        yield tally


def parse_options(pairs: tuple[str, ...], hint: str = "--option") -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name.strip():
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint=hint)
        options[name.strip()] = value
    return options


def open_backend(name: str, pairs: tuple[str, ...], hint: str = "--option") -> Backend:
    """Build backend ``name`` from ``-o`` pairs, each value converted to its field's type."""
    config = validate_options(name, default_registry.backend_class(name).Config,
                              parse_options(pairs, hint), from_strings=True)
    return default_registry.build(name, config)


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


@contextmanager
def failures_as_one_line() -> Iterator[None]:
    """A chathistory error (or a bad value) ends the command with one line, exit status 1."""
    try:
        yield
    except BrokenPipeError:
        raise  # the reader stopped reading (`| head`): the command group ends quietly
    except (ChatHistoryError, ValueError, TypeError, OSError) as exc:
        raise click.ClickException(one_line(exc)) from None


def plural(count: int, noun: str) -> str:
    """``1 session``, ``2 sessions``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def cutoff_before_now(text: str) -> datetime:
    """The moment ``text`` ago: ``30d``, ``12h``, ``90m``, ``2w`` or ``45s`` before now (UTC)."""
    found = _DURATION.match(text)
    if found is None:
        raise click.BadParameter(f"{text!r} is not a duration such as 30d, 12h, 90m or 2w",
                                 param_hint="--older-than")
    try:
        return datetime.now(UTC) - timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
    except OverflowError:
        raise click.BadParameter(f"{text!r} reaches back before the year 1",
                                 param_hint="--older-than") from None


def count_creating_nothing(store: Backend, count: Callable[[], T], *, upgrade: bool) -> T:
    """What a delete would delete, counted before anything is created.

    A misspelt path or table stays an error, not a new empty store and a count of 0. A
    store an earlier release made, whose catalog a count cannot read before the upgrade,
    is upgraded first (unless ``upgrade`` is false: a dry run writes nothing) and counted.
    """
    try:
        return count()
    except CollectionMissingError:
        if not upgrade or not isinstance(store, ListsSessions):
            raise
        store.list_sessions(limit=1)  # raises again if the store itself is missing
        ensure_collection(store)
        return count()


def _session_row(info: SessionInfo) -> dict[str, Any]:
    return {"session_id": info.session_id, "messages": info.messages,
            "last_write": info.last_write.isoformat() if info.last_write else None}


def _summary_row(summary: SessionSummary) -> str:
    updated = summary.updated_at.isoformat(timespec="seconds")
    return (f"{summary.session_id}\t{summary.messages}\t{updated}\t{summary.owner or '-'}\t"
            f"{summary.title or '-'}")


def metadata_pairs(pairs: tuple[str, ...], hint: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs, each value read as JSON (``n=1``, ``vip=true``), else as text."""
    metadata: dict[str, Any] = {}
    for pair in pairs:
        key, separator, text = pair.partition("=")
        if not separator or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=hint)
        try:
            metadata[key] = json.loads(text)
        except ValueError:
            metadata[key] = text
    return metadata


def _where(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--where key=value`` as a filter: text, whole numbers, booleans or null."""
    where = metadata_pairs(pairs, "--where")
    for key, value in where.items():
        if value is not None and not isinstance(value, str | int | bool):
            # A float, list or object: the catalog compares none of them (floats are not
            # exact); taking it as text instead would match nothing, silently.
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            raise click.BadParameter(
                f"'{key}={text}': metadata is compared with text, whole numbers, true, false "
                f"or null; for the text, quote it: '{key}={json.dumps(text)}'",
                param_hint="--where")
    return where


def _list_catalog(store: Backend, owner: str | None, newest_first: bool,
                  where: dict[str, Any], limit: int | None, cursor: str | None,
                  as_json: bool) -> int:
    """Print the catalog's listing (all pages, or ``limit`` rows); return the rows shown.

    A limited listing with more to show ends with the next page's ``--cursor`` on
    stderr; with ``as_json`` its last row carries it too, as ``next_cursor``, so that
    a script pages from stdout alone (a key added to the row: readers of the other
    keys are unaffected).
    """
    shown = 0
    while True:
        page_size = 100 if limit is None else min(100, limit - shown)
        page = list_conversations(store, owner=owner, newest_first=newest_first, where=where,
                                  limit=page_size, cursor=cursor)
        cursor = page.cursor
        more = cursor is not None and limit is not None and shown + len(page.summaries) >= limit
        for number, summary in enumerate(page.summaries, start=1):
            if not as_json:
                click.echo(_summary_row(summary))
                continue
            row = summary.to_json()
            if more and number == len(page.summaries):
                row["next_cursor"] = cursor
            click.echo(json.dumps(row, ensure_ascii=False))
        shown += len(page.summaries)
        if cursor is None:
            return shown
        if limit is not None and shown >= limit:
            click.echo(f"(more: --cursor {cursor})", err=True)
            return shown


@click.command()
@backend_options
@json_option
@click.option("--after", type=TEXT, default=None,
              help="Start after this session id (ids are sorted).")
@click.option("--limit", "-n", type=click.IntRange(min=1), default=None,
              help="Show at most N sessions.")
@owner_option("Only this owner's sessions (catalog).")
@click.option("--newest", is_flag=True, help="Most recently updated first (catalog).")
@click.option("--oldest", is_flag=True, help="Least recently updated first (catalog).")
@click.option("--where", "where_pairs", type=TEXT, multiple=True, metavar="KEY=VALUE",
              help="Only sessions whose metadata holds KEY=VALUE (catalog). Repeatable.")
@click.option("--cursor", default=None,
              help="Continue a listing where a limited one stopped (catalog).")
def sessions(backend: str, option_pairs: tuple[str, ...], as_json: bool, after: str | None,
             limit: int | None, owner: str | None, newest: bool, oldest: bool,
             where_pairs: tuple[str, ...], cursor: str | None) -> None:
    """List the stored sessions: id, message count and last write time. Creates nothing.

    With --owner, --newest, --oldest, --where or --cursor it lists the session
    catalog, by last update (newest first unless --oldest): id, messages,
    updated, owner, title. A limited listing ends with the --cursor of the next page.
    """
    catalog = any((owner, newest, oldest, where_pairs, cursor))
    if catalog and after is not None:
        raise click.UsageError("--after pages by id; the catalog's listing pages with --cursor")
    if newest and oldest:
        raise click.UsageError("--newest and --oldest: give one of them")
    with failures_as_one_line():
        store = open_backend(backend, option_pairs)
        try:
            if catalog:
                shown = _list_catalog(store, owner, not oldest, _where(where_pairs),
                                      limit, cursor, as_json)
                if not shown:
                    click.echo("(no sessions)", err=True)
                return
            if not isinstance(store, ListsSessions):
                raise CapabilityMissingError(f"backend {backend!r} cannot list its sessions")
            shown = 0
            for page in iter_sessions(store, after=after, page=500):
                for info in page[:None if limit is None else limit - shown]:
                    if as_json:
                        click.echo(json.dumps(_session_row(info), ensure_ascii=False))
                    else:
                        written = info.last_write.isoformat(timespec="seconds") \
                            if info.last_write else "-"
                        count = "-" if info.messages is None else str(info.messages)
                        click.echo(f"{info.session_id}\t{count}\t{written}")
                    shown += 1
                if limit is not None and shown >= limit:
                    break
        finally:
            store.close()
    if not shown:
        where = "" if after is None else f" after {after!r}"
        click.echo(f"(no sessions{where})", err=True)


@click.command()
@click.argument("session_id", type=TEXT)
@backend_options
def clear(session_id: str, backend: str, option_pairs: tuple[str, ...]) -> None:
    """Delete every message of SESSION_ID, and its catalog entry (no other session's)."""
    with failures_as_one_line():
        store = open_backend(backend, option_pairs)
        try:
            # A catalog keeps an entry for a session given a title before its first message.
            held = bool(store.fetch(session_id, limit=1)) or (
                isinstance(store, KeepsCatalog)
                and session_id in store.session_summaries([session_id]))
            if held:
                store.clear(session_id)
        finally:
            store.close()
    if held:
        click.echo(f"cleared session {session_id!r}", err=True)
    else:
        click.echo(f"no session {session_id!r}: it holds no messages, nothing was deleted",
                   err=True)


@click.command(name="export")
@click.argument("session_ids", type=TEXT, nargs=-1)
@backend_options
@click.option("--output", "-f", type=click.File("w", encoding="utf-8"), default="-",
              help="Write to this file instead of stdout.")
@json_option
@quiet_option
def export_command(session_ids: tuple[str, ...], backend: str, option_pairs: tuple[str, ...],
                   output: IO[str], as_json: bool, quiet: bool) -> None:
    """Write sessions (all, or SESSION_IDS) as JSON Lines: one record per line with its session.

    Where the store keeps a session catalog, each session's entry comes first, and
    a session it describes that holds no message yet is exported as its entry alone.
    Creates nothing in the store. An id that holds nothing is named on stderr.
    With --json, the summary is a JSON object (on stdout with -f, else on stderr).
    """
    with failures_as_one_line():
        store = open_backend(backend, option_pairs)
        try:
            ids = list(session_ids) or sessions_to_transfer(store)
            with counted_run(len(ids), "exported", "the output is incomplete; the same export "
                             "run again starts over", quiet) as tally:
                report = export_sessions(store, output, ids, progress=tally.advance)
        finally:
            store.close()
    if as_json:
        click.echo(json.dumps({"sessions": report.sessions, "messages": report.lines,
                               "summaries": report.summaries, "missing": report.missing},
                              ensure_ascii=False),
                   err=output.name == "<stdout>")
        return
    if session_ids:
        _say_missing(report.missing, "exported")
    click.echo(f"exported {plural(report.lines, 'message')} in "
               f"{plural(report.sessions, 'session')}", err=True)


@click.command(name="import")
@click.argument("source", type=click.File("r", encoding="utf-8"), default="-")
@backend_options
@click.option("--append", is_flag=True,
              help="Append every record after what its session holds, whatever that is "
                   "(running it twice appends twice).")
@json_option
@quiet_option
def import_command(source: IO[str], backend: str, option_pairs: tuple[str, ...],
                   append: bool, as_json: bool, quiet: bool) -> None:
    """Restore what `export` wrote (from SOURCE, default stdin).

    Every line is checked first; a bad line means nothing is written. Then a
    session the store lacks is written whole, and one holding the start of the
    file's records gets the rest, so importing twice or after an interruption
    is safe. A session holding anything else is left alone and named (exit
    status 1): clear it first, or add the file's records after it with --append.

    Where the store keeps a session catalog, each session gets the file's owner,
    title, metadata and times; where it already had some, the file's win (with
    --append the store's win, and its last update is the later of the two).
    """
    if source.isatty():  # no file given, and nothing piped in: it would wait for typing
        raise click.UsageError("give the file export wrote (chathistory import FILE), or pipe "
                               "it in (chathistory import < FILE)")
    rerun = ("the same import run again appends them a second time" if append else
             "the same import run again writes only what is missing")
    with counted_run(None, "appended" if append else "imported", rerun, quiet,
                     writing=False) as tally:
        tally.bar.set_description_str("checking")

        def checked(sessions: int, finished: bool) -> None:
            tally.bar.update(sessions)
            if finished:  # now the bar counts the sessions written, out of all of them
                tally.bar.set_description_str("", refresh=False)
                tally.bar.reset(total=tally.bar.n)
                tally.writing = True

        store = open_backend(backend, option_pairs)
        try:
            report = import_sessions(store, source, append=append, progress=tally.advance,
                                     checking=checked)
        finally:
            store.close()
    _print_report("imported", report, as_json, "the file's",
                  " (clear it first, or add the file's records after it with --append)")
    if report.mismatched:
        sys.exit(1)


@click.command()
@click.argument("session_ids", type=TEXT, nargs=-1)
@backend_options
@click.option("--to", "target_name", required=True, help="The backend to copy to.")
@click.option("--to-option", "-O", "target_pairs", multiple=True, metavar="NAME=VALUE",
              help="An option of the target backend. Repeatable.")
@click.option("--chunk", type=click.IntRange(min=1), default=CHUNK, show_default=True,
              help="Sessions read and written per round trip.")
@json_option
@quiet_option
def copy(session_ids: tuple[str, ...], backend: str, option_pairs: tuple[str, ...],
         target_name: str, target_pairs: tuple[str, ...], chunk: int, as_json: bool,
         quiet: bool) -> None:
    """Copy every session (or SESSION_IDS) to another backend, then check the counts.

    Safe to rerun and to interrupt: what the target already holds is not written
    again. Exits with status 1 if a session was left alone (the target held other
    messages for it) or its counts differ at the end; `mismatched` lists them.
    """
    with failures_as_one_line():
        source = open_backend(backend, option_pairs)
        try:
            target = open_backend(target_name, target_pairs, "--to-option")
            try:
                ids = list(session_ids) or sessions_to_transfer(source)
                report = _copy_with_progress(source, target, ids, chunk, quiet)
                expected = count_records(source, ids)
                found = count_records(target, ids)
            finally:
                target.close()
        finally:
            source.close()
    different = sorted(session for session in ids if expected[session] != found[session])
    report.mismatched = sorted({*report.mismatched, *different})
    _print_report("copied", report, as_json)
    if not as_json:
        _say_missing(report.missing, "copied")
    if different:
        click.echo(f"error: {plural(len(different), 'session')} "
                   f"{'differs' if len(different) == 1 else 'differ'} after the copy, e.g. "
                   f"{different[0]!r}: {plural(expected[different[0]], 'message')} in the "
                   f"source, {found[different[0]]} in the target", err=True)
    if report.mismatched:
        sys.exit(1)


def _say_missing(missing: list[str], verb: str) -> None:
    """Name, on stderr, the ids asked for that the source holds nothing of."""
    if missing:
        one = len(missing) == 1
        click.echo(f"no {'session' if one else 'sessions'} {', '.join(map(repr, missing))}: "
                   f"nothing {verb} for {'it' if one else 'them'}", err=True)


def _copy_with_progress(source: Backend, target: Backend, ids: list[str], chunk: int,
                        quiet: bool) -> CopyReport:
    with counted_run(len(ids), "copied", "the same copy run again writes only what is "
                     "missing", quiet) as tally:
        return copy_sessions(source, target, ids, chunk=chunk, progress=tally.advance)


def _print_report(verb: str, report: CopyReport, as_json: bool, source: str = "the source's",
                  remedy: str = "") -> None:
    summary: dict[str, Any] = {
        "sessions": report.sessions, "messages_written": report.messages,
        "already_complete": report.complete, "mismatched": report.mismatched,
        "summaries": report.summaries, "summaries_dropped": report.summaries_dropped}
    if verb == "copied":
        summary["missing"] = report.missing
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
        return
    if report.summaries_dropped:
        click.echo(f"note: the target keeps no session catalog; the owners, titles, metadata "
                   f"and times of {plural(report.summaries_dropped, 'session')} were not "
                   "kept", err=True)
    click.echo(f"{verb} {plural(report.messages, 'message')} in "
               f"{plural(report.sessions, 'session')} ({report.complete} already complete)")
    if report.mismatched:
        click.echo(f"left alone: {plural(len(report.mismatched), 'session')} whose stored "
                   f"messages are not the start of {source}, e.g. "
                   f"{report.mismatched[0]!r}{remedy}", err=True)


@click.command()
@backend_options
@click.option("--older-than", "age", required=True, metavar="AGE",
              help="Delete sessions not written for this long: 30d, 12h, 90m, 2w.")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@owner_option("Only this owner's sessions (catalog).")
@json_option
@quiet_option
def prune(backend: str, option_pairs: tuple[str, ...], age: str, dry_run: bool,
          owner: str | None, as_json: bool, quiet: bool) -> None:
    """Delete the sessions whose last write is older than AGE (all, or one --owner's).

    Stopped midway (Ctrl-C, a failure), it counts again what is left and says how
    many it had deleted; the same command run again deletes the rest.
    """
    cutoff = cutoff_before_now(age)
    whose = "" if owner is None else f" of owner {owner!r}"
    by_owner: dict[str, str] = {} if owner is None else {"owner": owner}
    deleting = 0  # the sessions to delete, once the delete has begun

    def deleted() -> str | None:
        if not deleting:
            return None
        old = (f"the {plural(deleting, 'session')}{whose} last written before "
               f"{cutoff.isoformat(timespec='seconds')}")
        try:  # on a new connection: the one stopped midway may be in a broken state
            with failures_as_one_line():
                again = open_backend(backend, option_pairs)
                try:
                    left = int(_pruner(again, backend, owner)(cutoff, dry_run=True, **by_owner))
                finally:
                    again.close()
        except click.ClickException as exc:
            return f"deleted some or none of {old} (counting them again failed: {exc.message})"
        return f"deleted {max(deleting - left, 0)} of {old}"

    with said_when_stopped(deleted, "the same command run again deletes the rest"):
        store = open_backend(backend, option_pairs)
        try:
            prune_many = _pruner(store, backend, owner)
            count = count_creating_nothing(
                store, partial(prune_many, cutoff, dry_run=True, **by_owner),
                upgrade=not dry_run)
            if not dry_run and count:
                deleting = count
                ensure_collection(store)  # a file of an earlier release is upgraded first
                with progress_bar(count, "session", quiet) as bar:
                    count = prune_many(cutoff, **by_owner)
                    bar.update(count)
        finally:
            store.close()
    if as_json:
        click.echo(json.dumps({"cutoff": cutoff.isoformat(), "dry_run": dry_run,
                               "owner": owner, "sessions": count}))
    else:
        verb = "would delete" if dry_run else "deleted"
        click.echo(f"{verb} {plural(count, 'session')}{whose} last written before "
                   f"{cutoff.isoformat(timespec='seconds')}")


def _pruner(store: Backend, backend: str, owner: str | None) -> Any:
    """``store``'s ``delete_sessions_before`` (which takes ``owner=`` on a catalog backend),
    or the error that says why ``store`` cannot prune (by ``owner``)."""
    if isinstance(store, TracksWriteTimes) and not isinstance(store, PrunesSessions):
        raise CapabilityMissingError(
            f"backend {backend!r} cannot delete sessions by age: it lacks the "
            "PrunesSessions capability (it lists their last writes, but deletes no "
            "session by them)")
    if not isinstance(store, PrunesSessions):
        raise CapabilityMissingError(
            f"backend {backend!r} keeps no write times, so it cannot prune by age")
    if owner is not None:
        require_catalog(store, "know owners, so it cannot prune by --owner")
    return store.delete_sessions_before


def register(group: click.Group) -> None:
    """Add the session commands to the ``chathistory`` command group."""
    for command in (sessions, clear, export_command, import_command, copy, prune):
        group.add_command(command)

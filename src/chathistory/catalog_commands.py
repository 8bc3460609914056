"""The commands on the session catalog: title, owner, metadata and erase.

Listing is ``sessions --owner ... --newest``, pruning one owner's sessions is
``prune --owner ...`` (both in :mod:`chathistory.session_commands`).
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import click

from chathistory.backend import Backend, ensure_collection
from chathistory.catalog import ErasureReceipt, SessionSummary, erase, require_catalog
from chathistory.history import check_session_id
from chathistory.session_commands import (
    TEXT,
    backend_options,
    count_creating_nothing,
    counted_run,
    failures_as_one_line,
    json_option,
    metadata_pairs,
    open_backend,
    owner_option,
    plural,
    quiet_option,
)

__all__ = ["register"]


def _describe(session_id: str, backend: str, option_pairs: tuple[str, ...], as_json: bool,
              metadata_only: bool = False, what: str = "keep owners or titles",
              **change: Any) -> None:
    with failures_as_one_line():
        store = open_backend(backend, option_pairs)
        try:
            catalog = require_catalog(store, what)
            ensure_collection(store)
            summary = catalog.update_session(check_session_id(session_id), **change)
        finally:
            store.close()
    _print_summary(summary, as_json, metadata_only)


def _print_summary(summary: SessionSummary, as_json: bool, metadata: bool = False) -> None:
    if as_json:
        click.echo(json.dumps(summary.to_json(), ensure_ascii=False))
    elif metadata:
        click.echo(f"{summary.session_id}: metadata "
                   f"{json.dumps(summary.metadata, ensure_ascii=False)}")
    else:
        click.echo(f"{summary.session_id}: owner {summary.owner or '-'}, title "
                   f"{summary.title or '-'}, {plural(summary.messages, 'message')}")


@click.command()
@click.argument("session_id", type=TEXT)
@click.argument("title", type=TEXT)
@backend_options
@json_option
def title(session_id: str, title: str, backend: str, option_pairs: tuple[str, ...],
          as_json: bool) -> None:
    """Set the title of SESSION_ID ("" clears it)."""
    _describe(session_id, backend, option_pairs, as_json, title=title or None)


@click.command()
@click.argument("session_id", type=TEXT)
@click.argument("owner", type=TEXT)
@backend_options
@json_option
def owner(session_id: str, owner: str, backend: str, option_pairs: tuple[str, ...],
          as_json: bool) -> None:
    """Set the owner of SESSION_ID: your application's user id ("" clears it)."""
    _describe(session_id, backend, option_pairs, as_json, owner=owner or None)


@click.command()
@click.argument("session_id", type=TEXT)
@click.argument("pairs", type=TEXT, nargs=-1, metavar="[KEY=VALUE]...")
@backend_options
@click.option("--replace", is_flag=True,
              help="Replace the whole metadata object (with no pairs: empty it).")
@json_option
def metadata(session_id: str, pairs: tuple[str, ...], backend: str,
             option_pairs: tuple[str, ...], replace: bool, as_json: bool) -> None:
    """Merge KEY=VALUE pairs into the metadata of SESSION_ID, or --replace it; print it.

    Each value is read as JSON where it can (n=1 the number, vip=true the
    boolean, tags='["a"]' a list), else as text. With no pairs, prints it.
    """
    if pairs or replace:
        _describe(session_id, backend, option_pairs, as_json, metadata_only=True,
                  what="keep metadata", metadata=metadata_pairs(pairs, "KEY=VALUE"),
                  replace_metadata=replace)
        return
    with failures_as_one_line():  # only read: a session it does not know is not created
        store = open_backend(backend, option_pairs)
        try:
            found = require_catalog(store, "keep metadata").session_summaries(
                [check_session_id(session_id)])
        finally:
            store.close()
    if session_id not in found:
        raise click.ClickException(f"no session {session_id!r}: it has no catalog entry")
    _print_summary(found[session_id], as_json, metadata=True)


@click.command(name="erase")
@click.argument("session_ids", type=TEXT, nargs=-1)
@backend_options
@owner_option("Erase every session of this owner.")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@quiet_option
def erase_command(session_ids: tuple[str, ...], backend: str, option_pairs: tuple[str, ...],
                  owner: str | None, dry_run: bool, yes: bool, as_json: bool, quiet: bool
                  ) -> None:
    """Delete every session of --owner, or SESSION_IDS, with their catalog entries.

    Counts first and asks before deleting (--yes does not ask). Sessions go
    100 per transaction: a run interrupted midway leaves whole sessions, and
    the same command run again finishes the job. Prints the receipt: the
    sessions and messages deleted.
    """
    if (owner is None) == (not session_ids):
        raise click.UsageError("name an --owner or SESSION_IDS (one of them)")
    target: dict[str, Any] = ({"owner": owner} if owner is not None
                              else {"session_ids": list(session_ids)})
    whose = f"of owner {owner!r}" if owner is not None else "named"
    with failures_as_one_line():
        store = open_backend(backend, option_pairs)
        try:
            # A misspelt path is an error, not a new empty store and a receipt saying
            # the owner had nothing.
            counted = count_creating_nothing(
                store, partial(erase, store, dry_run=True, **target), upgrade=not dry_run)
            receipt = counted
            missing = _without_entries(store, session_ids)
            if not dry_run and counted.sessions:
                if not yes:
                    _confirm(f"Erase {plural(counted.sessions, 'session')} {whose} "
                             f"({plural(counted.messages, 'message')})?")
                ensure_collection(store)  # a file of an earlier release is upgraded first
                receipt = _erase_with_progress(store, target, counted.sessions, whose, quiet)
        finally:
            store.close()
    if as_json:
        named = {"missing": missing} if session_ids else {}
        click.echo(json.dumps({"owner": owner, "dry_run": dry_run,
                               "sessions": receipt.sessions, "messages": receipt.messages,
                               **named}, ensure_ascii=False))
        return
    for session_id in missing:
        click.echo(f"no session {session_id!r}: nothing to erase for it", err=True)
    verb = "would erase" if dry_run else "erased"
    click.echo(f"{verb} {plural(receipt.sessions, 'session')} {whose} "
               f"({plural(receipt.messages, 'message')})")


def _without_entries(store: Backend, session_ids: tuple[str, ...]) -> list[str]:
    """Those of ``session_ids`` the catalog does not know: an erase names them."""
    if not session_ids:
        return []
    known = require_catalog(store, "erase sessions").session_summaries(list(session_ids))
    return [session_id for session_id in dict.fromkeys(session_ids) if session_id not in known]


def _confirm(question: str) -> None:
    """Ask on stderr; a "no", Ctrl-C or no answer at all (no terminal, as under cron) ends
    the command saying that nothing was erased and how not to be asked."""
    try:
        confirmed = click.confirm(question, err=True)
    except click.Abort:
        click.echo(err=True)  # end the prompt's line: no answer ended it
        confirmed = False
    if not confirmed:
        raise click.ClickException(
            "not confirmed: nothing was erased (--yes erases without asking)")


def _erase_with_progress(store: Backend, target: dict[str, Any], total: int, whose: str,
                         quiet: bool) -> ErasureReceipt:
    """Erase with a progress bar; stopped midway (Ctrl-C, a failure), say what is gone."""
    with counted_run(total, "erased", "the same command run again erases the rest", quiet,
                     whose=f" {whose}") as tally:
        def advance(done: ErasureReceipt) -> None:
            tally.advance(done.sessions, done.messages)

        return erase(store, progress=advance, **target)


def register(group: click.Group) -> None:
    """Add the catalog commands to the ``chathistory`` command group."""
    for command in (title, owner, metadata, erase_command):
        group.add_command(command)

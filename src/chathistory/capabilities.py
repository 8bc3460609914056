"""Optional backend capabilities: what a store can do beyond the four methods.

The backend protocol stays ``create_collection``, ``append``, ``fetch`` and
``clear``. A backend whose store allows more declares it by implementing one
of the protocols below (sync and async methods both); the core detects it
with :func:`capabilities_of`, and the contract suite tests a capability only
where it is declared. A backend written against the four methods alone keeps
working everywhere, and commands that need a capability say which one is
missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from chathistory.catalog import KeepsCatalog, ListsSummaries, check_limit
from chathistory.errors import RecordError

__all__ = [
    "CopiesInBulk",
    "CopiesRecordText",
    "FetchesInBulk",
    "KeepsCatalog",
    "ListsSessions",
    "ListsSummaries",
    "PrunesSessions",
    "SessionInfo",
    "TracksWriteTimes",
    "capabilities_of",
    "check_cutoff",
    "check_page_limit",
    "check_record_texts",
]


@dataclass(frozen=True)
class SessionInfo:
    """One stored session, as :meth:`ListsSessions.list_sessions` reports it.

    Attributes:
        session_id: The session's id.
        messages: How many records it holds, or ``None`` where counting is not cheap.
        last_write: When a record was last appended (timezone-aware, UTC), or
            ``None`` where the backend keeps no write times.
    """

    session_id: str
    messages: int | None = None
    last_write: datetime | None = None


@runtime_checkable
class ListsSessions(Protocol):
    """The backend can enumerate its sessions, a page at a time."""

    def list_sessions(self, *, after: str | None = None, limit: int = 100
                      ) -> list[SessionInfo]:
        """Up to ``limit`` sessions with records, ordered by id, whose id sorts after ``after``.

        The next page starts after the last id of this one; an empty page is
        the end. A page costs what its sessions cost, not what the store holds.
        """

    async def alist_sessions(self, *, after: str | None = None, limit: int = 100
                             ) -> list[SessionInfo]: ...


@runtime_checkable
class TracksWriteTimes(Protocol):
    """The backend knows when each session was last written."""

    def last_write(self, session_id: str) -> datetime | None:
        """When ``session_id`` last had records appended (UTC), or ``None`` if it has none."""

    async def alast_write(self, session_id: str) -> datetime | None: ...


@runtime_checkable
class PrunesSessions(Protocol):
    """The backend can delete, in bulk, the sessions not written since a moment."""

    def delete_sessions_before(self, cutoff: datetime, *, dry_run: bool = False) -> int:
        """Delete every session whose last write is before ``cutoff``; return how many.

        With ``dry_run``, count them and delete nothing. Sessions written at or
        after ``cutoff`` are untouched. Costs what the sessions it deletes cost.
        A backend that also declares :class:`~chathistory.catalog.KeepsCatalog`
        takes ``owner=`` too: then only that owner's sessions are considered
       .
        """

    async def adelete_sessions_before(self, cutoff: datetime, *, dry_run: bool = False
                                      ) -> int: ...


@runtime_checkable
class FetchesInBulk(Protocol):
    """The backend reads many sessions in one round trip (export, copy from it)."""

    def fetch_many(self, session_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Every record of each of ``session_ids`` that has any, oldest first, in one read."""

    async def afetch_many(self, session_ids: Sequence[str]
                          ) -> dict[str, list[dict[str, Any]]]: ...


@runtime_checkable
class CopiesInBulk(FetchesInBulk, Protocol):
    """The backend also writes many sessions in one round trip, all or nothing (copy to it)."""

    def append_many(self, batches: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Append each session's records after its existing ones: all sessions or none."""

    async def aappend_many(self, batches: Mapping[str, Sequence[Mapping[str, Any]]]
                           ) -> None: ...


@runtime_checkable
class CopiesRecordText(Protocol):
    """The backend reads and writes many sessions' records as their JSON text.

    A copy between two backends that both declare it carries each record's
    text from one store to the other without decoding and re-encoding it,
    which is most of a bulk copy's work.
    """

    def fetch_many_text(self, session_ids: Sequence[str]) -> dict[str, list[str]]:
        """What :meth:`FetchesInBulk.fetch_many` returns, each record as its JSON text.

        Each text is one JSON object: decoded, it equals the record ``fetch`` returns.
        """

    def append_many_text(self, batches: Mapping[str, Sequence[str]]) -> None:
        """What :meth:`CopiesInBulk.append_many` does, for records given as JSON text.

        Each text must be one JSON object, as :meth:`fetch_many_text` gives
        them; a text that is not a string starting with ``{`` is a
        RecordError and nothing is written. The text is not otherwise parsed
        where the store does not parse it itself: this is the path for text
        another store already checked.
        """

    async def afetch_many_text(self, session_ids: Sequence[str]) -> dict[str, list[str]]: ...

    async def aappend_many_text(self, batches: Mapping[str, Sequence[str]]) -> None: ...


_CAPABILITIES: dict[str, type] = {
    "list_sessions": ListsSessions,
    "last_write": TracksWriteTimes,
    "delete_sessions_before": PrunesSessions,
    "fetch_many": FetchesInBulk,
    "append_many": CopiesInBulk,
    "record_text": CopiesRecordText,
    "catalog": KeepsCatalog,
    "summaries": ListsSummaries,
}


def capabilities_of(backend: object) -> frozenset[str]:
    """The names of the optional capabilities ``backend`` declares.

    A capability counts only when both its sync and async methods are there.
    """
    return frozenset(name for name, protocol in _CAPABILITIES.items()
                     if isinstance(backend, protocol))


def check_record_texts(batches: Mapping[str, Sequence[str]]) -> None:
    """Refuse, before anything is written, texts that cannot be records' JSON objects.

    The cheap check :meth:`CopiesRecordText.append_many_text` promises: each
    text is a ``str`` whose first character is ``{``, and that UTF-8 can carry (no
    lone surrogate, which a driver's codec would refuse halfway through a write).
    """
    for session_id, texts in batches.items():
        if isinstance(texts, str):
            raise TypeError(f"the texts of session {session_id!r} must be a list of JSON "
                            "texts, not one str")
        for position, text in enumerate(texts):
            if not isinstance(text, str) or not text.startswith("{"):
                raise RecordError(
                    f"record {position} of session {session_id!r} is not a JSON object's "
                    f"text: {str(text)[:40]!r}")
            if not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise RecordError(f"record {position} of session {session_id!r} cannot be "
                                      "stored as UTF-8: it holds a lone surrogate") from None


check_page_limit = check_limit
"""A page size: :func:`chathistory.catalog.check_limit` under the name it had here."""


def check_cutoff(cutoff: object) -> datetime:
    """:meth:`PrunesSessions.delete_sessions_before`'s cutoff: a timezone-aware datetime,
    else a TypeError (not a datetime) or a ValueError (naive)."""
    if not isinstance(cutoff, datetime):
        raise TypeError(f"cutoff must be a datetime, not {type(cutoff).__name__}")
    if cutoff.utcoffset() is None:
        raise ValueError("cutoff must be timezone-aware (for example datetime.now(UTC))")
    return cutoff

"""The session catalog: owners, titles, metadata, times and counts, as an optional capability.

A backend that declares :class:`KeepsCatalog` keeps, beside each session's
messages, a *summary*: who owns it, its title, a small JSON metadata object,
when it was created and last written, and how many messages it holds. The
times and the count change in the same transaction (or server-side script)
as the append or the clear that changes them, so they never drift.

A summary exists while its session holds messages, or once an owner, title
or metadata was set on it; ``clear`` removes it with the messages. The
last-updated time moves when messages are appended (setting a title does not
reorder a listing). Listings are keyset-paged on ``(updated_at, session_id)``:
a session that is not written while the pages are read appears exactly once.

The module-level functions are what applications call (``chathistory``
exports them): :func:`list_conversations`, :func:`erase`, and
:func:`require_catalog` for the error a backend without the capability gives.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeAlias, TypeVar, runtime_checkable

from chathistory.compaction import summary_session_id
from chathistory.errors import CapabilityMissingError, ChatHistoryError

__all__ = [
    "UNCHANGED",
    "ErasureReceipt",
    "KeepsCatalog",
    "ListsSummaries",
    "MetadataValue",
    "SessionSummary",
    "SummaryPage",
    "Unchanged",
    "aerase",
    "alist_conversations",
    "check_limit",
    "check_metadata",
    "check_session_id",
    "check_session_ids",
    "check_text",
    "check_unicode",
    "check_update",
    "check_where",
    "checked_entry",
    "erase",
    "list_conversations",
    "merge_metadata",
    "metadata_matches",
    "read_cursor",
    "require_catalog",
    "summary_page",
    "updated_entry",
    "write_cursor",
]

MAX_METADATA_CHARS = 16_384
"""The largest metadata object, as compact JSON text: a catalog entry is not a document store."""

MetadataValue: TypeAlias = str | int | bool | None
"""What a ``where`` filter compares a metadata key with (JSON scalars; floats are not exact)."""
Row = TypeVar("Row")  # a backend's stored row of a summary, whatever its type


class Unchanged(enum.Enum):
    """The type of :data:`UNCHANGED`."""

    UNCHANGED = "UNCHANGED"


UNCHANGED = Unchanged.UNCHANGED
"""Leave this field as it is (``None`` clears an owner or a title)."""


@dataclass(frozen=True)
class SessionSummary:
    """One session as the catalog describes it: never its messages.

    Attributes:
        session_id: The session's id.
        owner: Whose it is (an application's user id), or ``None``.
        title: Its title, or ``None``.
        metadata: A small JSON object (``{}`` if none was set).
        created_at: When it was first written or described (timezone-aware, UTC).
        updated_at: When messages were last appended (UTC); ``created_at`` until then.
        messages: How many messages it holds.
    """

    session_id: str
    owner: str | None
    title: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    messages: int

    def to_json(self) -> dict[str, Any]:
        """The summary as a JSON object (times as ISO 8601 text)."""
        return {"session_id": self.session_id, "owner": self.owner, "title": self.title,
                "metadata": self.metadata, "created_at": self.created_at.isoformat(),
                "updated_at": self.updated_at.isoformat(), "messages": self.messages}

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> SessionSummary:
        """The summary :meth:`to_json` wrote; a ValueError names what is wrong."""
        try:
            created = datetime.fromisoformat(entry["created_at"])
            updated = datetime.fromisoformat(entry["updated_at"])
            summary = cls(session_id=entry["session_id"], owner=entry.get("owner"),
                          title=entry.get("title"), metadata=dict(entry.get("metadata") or {}),
                          created_at=created, updated_at=updated,
                          messages=int(entry.get("messages", 0)))
        except KeyError as exc:
            raise ValueError(f"not a session summary: it has no {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a session summary: {exc}") from None
        if created.tzinfo is None or updated.tzinfo is None:
            raise ValueError("a session summary's times must carry their time zone")
        check_text("owner", summary.owner)
        check_text("title", summary.title)
        check_metadata(summary.metadata)
        return summary


@dataclass(frozen=True)
class SummaryPage:
    """One page of a listing.

    Attributes:
        summaries: Up to ``limit`` summaries, in the listing's order.
        cursor: Pass it back for the next page; ``None`` when this is the last one.
    """

    summaries: list[SessionSummary]
    cursor: str | None


@dataclass
class ErasureReceipt:
    """What an erasure deleted.

    Attributes:
        sessions: Sessions deleted (with their catalog entries).
        messages: Messages deleted.
        dry_run: Nothing was deleted; the counts are what would have been.
    """

    sessions: int = 0
    messages: int = 0
    dry_run: bool = False

    def add(self, other: ErasureReceipt) -> None:
        self.sessions += other.sessions
        self.messages += other.messages


@runtime_checkable
class ListsSummaries(Protocol):
    """The backend lists summaries of its sessions: the read side of the catalog.

    :class:`KeepsCatalog` extends it. A backend that can only read (one whose
    store takes no owners, titles or metadata, such as Rockset's) declares this
    alone: its summaries have ``owner=None``, ``title=None`` and ``metadata={}``,
    and a listing filtered by owner or metadata raises
    :class:`~chathistory.errors.CapabilityMissingError` saying so.
    """

    def list_summaries(self, *, owner: str | None = None, newest_first: bool = True,
                       where: Mapping[str, MetadataValue] | None = None, limit: int = 20,
                       cursor: str | None = None) -> SummaryPage:
        """A page of summaries, ordered by ``(updated_at, session_id)``.

        Args:
            owner: Only this owner's sessions; ``None`` lists every session.
            newest_first: Most recently updated first (else oldest first).
            where: Only sessions whose metadata holds each key with that value.
            limit: At most this many summaries (>= 1).
            cursor: The previous page's cursor, given with the same arguments.

        Costs what the page costs, not what the store holds (where the filter
        is the owner).
        """

    def session_summaries(self, session_ids: Sequence[str]) -> dict[str, SessionSummary]:
        """The summaries of those of ``session_ids`` that have one, in one read."""

    async def alist_summaries(self, *, owner: str | None = None, newest_first: bool = True,
                              where: Mapping[str, MetadataValue] | None = None,
                              limit: int = 20, cursor: str | None = None) -> SummaryPage: ...

    async def asession_summaries(self, session_ids: Sequence[str]
                                 ) -> dict[str, SessionSummary]: ...


@runtime_checkable
class KeepsCatalog(ListsSummaries, Protocol):
    """The backend keeps a summary of each session (see the module's docstring).

    A backend that declares it also accepts ``owner=`` in
    :meth:`~chathistory.capabilities.PrunesSessions.delete_sessions_before`.
    """

    def update_session(self, session_id: str, *, owner: str | Unchanged | None = UNCHANGED,
                       title: str | Unchanged | None = UNCHANGED,
                       metadata: Mapping[str, Any] | None = None, replace_metadata: bool = False,
                       only_if_unset: bool = False) -> SessionSummary:
        """Set a session's owner, title or metadata; return its summary.

        ``metadata`` is merged key by key into what is stored, or replaces it
        with ``replace_metadata``. With ``only_if_unset``, an owner or title is
        set only where none is (what a middleware does on each run). A session
        without messages gets a summary with a count of 0. Its times do not move.
        """

    def erase_sessions(self, session_ids: Sequence[str], *, dry_run: bool = False
                       ) -> ErasureReceipt:
        """Delete these sessions' messages and summaries, all in one transaction.

        Ids without a session are ignored, so erasing twice is harmless.
        """

    def restore_summaries(self, summaries: Sequence[SessionSummary]) -> None:
        """Give sessions the owner, title, metadata and both times of ``summaries``.

        For copies and imports, so that a migrated session keeps its age. The
        count is the store's own and is not taken from the summary.
        """

    async def aupdate_session(self, session_id: str, *,
                              owner: str | Unchanged | None = UNCHANGED,
                              title: str | Unchanged | None = UNCHANGED,
                              metadata: Mapping[str, Any] | None = None,
                              replace_metadata: bool = False,
                              only_if_unset: bool = False) -> SessionSummary: ...

    async def aerase_sessions(self, session_ids: Sequence[str], *, dry_run: bool = False
                              ) -> ErasureReceipt: ...

    async def arestore_summaries(self, summaries: Sequence[SessionSummary]) -> None: ...


# -- checks shared by the backends --------------------------------------------------------

def check_unicode(field_name: str, value: str) -> str:
    """``value`` if a store can keep it as UTF-8 text, else a ValueError naming
    ``field_name``, where its lone surrogate is, and what to pass instead.

    A lone surrogate (``"\\udcff"``) is no Unicode character: a SQL driver's codec
    fails on it deep inside a write, and JSON (export, import) cannot carry it
    as text. Bytes decoded with ``errors="surrogateescape"`` are where they come from.
    """
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{field_name} holds a lone surrogate ({value[exc.start]!a} at position "
            f"{exc.start}), which is not Unicode text, so no store can keep it as UTF-8: "
            "pass valid text (decode bytes with errors='strict' or 'replace', not "
            "'surrogateescape')") from None
    return value


def check_text(field_name: str, value: object) -> str | None:
    """An owner or a title: ``None`` or a non-empty str without NUL or lone surrogates,
    else a ValueError."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ValueError(f"{field_name} must be None or a non-empty str without NUL, "
                         f"not {value!r}")
    return check_unicode(field_name, value)


def check_metadata(metadata: object) -> str:
    """The metadata object as compact JSON text; a ValueError if it cannot be one."""
    if not isinstance(metadata, Mapping):
        raise ValueError(f"metadata must be a JSON object (a dict), not "
                         f"{type(metadata).__name__}")
    if not all(isinstance(key, str) for key in metadata):
        raise ValueError("metadata keys must be str")
    try:
        text = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata must be JSON: {exc}") from None
    if "\x00" in text:
        raise ValueError("metadata must not contain NUL characters")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            _check_unicode_within("metadata", metadata)
    if len(text) > MAX_METADATA_CHARS:
        raise ValueError(f"metadata is {len(text)} characters as JSON; at most "
                         f"{MAX_METADATA_CHARS} are kept in the catalog")
    return text


def _check_unicode_within(name: str, value: object) -> None:
    """:func:`check_unicode` on each str of a JSON value, naming the key or item it is."""
    if isinstance(value, str):
        check_unicode(name, value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_unicode(f"{name} key {key!a}", key)
            _check_unicode_within(f"{name}[{key!a}]", item)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_unicode_within(f"{name}[{index}]", item)


def merge_metadata(stored: Mapping[str, Any], update: Mapping[str, Any], replace: bool
                   ) -> dict[str, Any]:
    """What :meth:`KeepsCatalog.update_session` stores: ``update`` over ``stored``, key by key."""
    return dict(update) if replace else {**stored, **update}


def check_update(owner: str | Unchanged | None, title: str | Unchanged | None,
                 metadata: Mapping[str, Any] | None) -> None:
    """:meth:`KeepsCatalog.update_session`'s arguments, checked before anything is read."""
    if not isinstance(owner, Unchanged):
        check_text("owner", owner)
    if not isinstance(title, Unchanged):
        check_text("title", title)
    if metadata is not None:
        check_metadata(metadata)


Entry: TypeAlias = tuple[str | None, str | None, str]
"""A catalog entry's owner, title and metadata (as JSON text), as a SQL backend stores them."""


def updated_entry(stored: Entry | None, owner: str | Unchanged | None,
                  title: str | Unchanged | None, metadata: Mapping[str, Any] | None,
                  replace_metadata: bool, only_if_unset: bool) -> Entry:
    """What :meth:`KeepsCatalog.update_session` writes over ``stored`` (``None``: no entry)."""
    stored_owner, stored_title, stored_metadata = stored or (None, None, "{}")
    if not isinstance(owner, Unchanged) and not (only_if_unset and stored_owner):
        stored_owner = owner
    if not isinstance(title, Unchanged) and not (only_if_unset and stored_title):
        stored_title = title
    if metadata is not None:
        # Checked again merged: what is stored must stay within the size limit.
        stored_metadata = check_metadata(
            merge_metadata(json.loads(stored_metadata), metadata, replace_metadata))
    return stored_owner, stored_title, stored_metadata


def checked_entry(summary: SessionSummary) -> Entry:
    """A summary's owner, title and metadata, checked (and its times: timezone-aware), as
    :meth:`KeepsCatalog.restore_summaries` stores them."""
    for moment in (summary.created_at, summary.updated_at):
        if not isinstance(moment, datetime) or moment.utcoffset() is None:
            raise ValueError("a summary's times must be timezone-aware datetimes "
                             f"(for example datetime.now(UTC)), not {moment!r}")
    return (check_text("owner", summary.owner), check_text("title", summary.title),
            check_metadata(summary.metadata))


def check_where(where: Mapping[str, MetadataValue] | None) -> dict[str, MetadataValue]:
    """A metadata filter: str keys without ``"``, scalar values; else a ValueError."""
    if where is None:
        return {}
    if not isinstance(where, Mapping):
        raise ValueError(f"where must be a dict of metadata key to value, not {where!r}")
    for key, value in where.items():
        if not isinstance(key, str) or not key or '"' in key or "\x00" in key:
            raise ValueError(f"a where key must be a non-empty str without '\"', not {key!r}")
        check_unicode(f"where key {key!a}", key)
        if value is not None and not isinstance(value, str | int | bool):
            raise ValueError(f"where[{key!r}] must be a str, int, bool or None, not {value!r}")
        if isinstance(value, str):
            check_unicode(f"where[{key!r}]", value)
    return dict(where)


def check_limit(limit: object) -> int:
    """A listing's page size: an int >= 1, else a ValueError saying why."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be an int >= 1, not {limit!r}")
    return limit


def check_session_ids(session_ids: Sequence[str]) -> list[str]:
    """The ids of a bulk call, each once, in the order given; a TypeError for one str
    (a str is a sequence too: of its characters). The ids themselves are not checked."""
    if isinstance(session_ids, str | bytes):
        raise TypeError("session_ids must be a list of ids, not one str")
    return list(dict.fromkeys(session_ids))


def check_session_id(session_id: object) -> str:
    """A session id a store binds as UTF-8 text: a str without lone surrogates, else a
    ValueError. (A store that keeps any str, as Redis does, need not call it; the
    application's API, :class:`~chathistory.ChatHistory`, refuses them on every backend.)"""
    if not isinstance(session_id, str):
        raise ValueError(f"session_id must be a str, not {type(session_id).__name__}")
    return check_unicode("session_id", session_id)


def write_cursor(position: Sequence[Any], newest_first: bool) -> str:
    """An opaque cursor holding a backend's position (JSON values) and the listing's order."""
    text = json.dumps([list(position), newest_first], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def read_cursor(cursor: str | None, newest_first: bool,
                shape: Sequence[type | tuple[type, ...]] = ()) -> list[Any] | None:
    """The position :func:`write_cursor` stored, or a ValueError for a cursor not made so.

    ``shape`` gives the type of each value of the position as the backend writes it, say
    ``(str, str)``: a position of another length or types (another backend's cursor, or
    one edited by hand) is refused as well, before the backend reads a value of it.
    """
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position, order = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError, binascii.Error):
        raise ValueError(f"not a listing cursor: {cursor[:40]!r}") from None
    if order is not newest_first:
        raise ValueError("this cursor belongs to a listing in the other order")
    if not isinstance(position, list) or (shape and not (len(position) == len(shape) and all(
            # JSON's true is an int to isinstance; no position holds one.
            isinstance(value, kind) and not isinstance(value, bool)
            for value, kind in zip(position, shape, strict=True)))):
        raise ValueError(f"not a listing cursor: {cursor[:40]!r}")
    return position


def summary_page(rows: Sequence[Row], limit: int, newest_first: bool,
                 summary: Callable[[Row], SessionSummary],
                 position: Callable[[Row], Sequence[Any]]) -> SummaryPage:
    """The page of the first ``limit`` of ``rows``, which a listing reads ``limit + 1`` of
    to know whether a page follows; if one does, its cursor is the ``position`` of the
    page's last row (what :func:`read_cursor` gives back)."""
    last = rows[limit - 1] if len(rows) > limit else None
    return SummaryPage([summary(row) for row in rows[:limit]],
                       None if last is None else write_cursor(position(last), newest_first))


def metadata_matches(metadata: Mapping[str, Any], where: Mapping[str, MetadataValue]) -> bool:
    """Whether ``metadata`` holds each key of a :func:`check_where` filter with its value,
    equal as JSON values are: ``True`` is not ``1``, nor ``1`` ``"1"``."""
    return all(key in metadata and type(metadata[key]) is type(value) and metadata[key] == value
               for key, value in where.items())


# -- the application's API ----------------------------------------------------------------

def require_catalog(backend: object, what: str = "keep a session catalog") -> KeepsCatalog:
    """``backend`` as a catalog, or a CapabilityMissingError naming the capability."""
    if not isinstance(backend, KeepsCatalog):
        name = getattr(backend, "name", type(backend).__name__)
        raise CapabilityMissingError(
            f"backend {name!r} does not {what}: it lacks the KeepsCatalog capability "
            "(owners, titles, metadata, listings, erasure)")
    return backend


def _require_summaries(backend: object) -> ListsSummaries:
    if isinstance(backend, ListsSummaries):
        return backend
    return require_catalog(backend, "list conversations")


def list_conversations(backend: object, *, owner: str | None = None, newest_first: bool = True,
                       where: Mapping[str, MetadataValue] | None = None, limit: int = 20,
                       cursor: str | None = None) -> SummaryPage:
    """A page of ``backend``'s conversations, newest first: a chat app's sidebar.

    Example::

        page = list_conversations(backend, owner="user-42", limit=20)
        for summary in page.summaries:
            print(summary.title, summary.updated_at)
        if page.cursor is not None:  # None: that was the last page
            more = list_conversations(backend, owner="user-42", cursor=page.cursor)

    Raises:
        CapabilityMissingError: the backend keeps no catalog.
        ValueError: a bad limit, filter or cursor.
    """
    return _require_summaries(backend).list_summaries(
        owner=owner, newest_first=newest_first, where=where, limit=limit, cursor=cursor)


async def alist_conversations(backend: object, *, owner: str | None = None,
                              newest_first: bool = True,
                              where: Mapping[str, MetadataValue] | None = None,
                              limit: int = 20, cursor: str | None = None) -> SummaryPage:
    """Async :func:`list_conversations`."""
    return await _require_summaries(backend).alist_summaries(
        owner=owner, newest_first=newest_first, where=where, limit=limit, cursor=cursor)


ERASE_CHUNK = 100
"""Sessions erased per transaction: a run killed between two leaves whole sessions only."""

Progress = Callable[[ErasureReceipt], None]


def erase(backend: object, *, owner: str | None = None,
          session_ids: Sequence[str] | None = None, dry_run: bool = False,
          chunk: int = ERASE_CHUNK, progress: Progress | None = None) -> ErasureReceipt:
    """Delete every session of ``owner`` (or ``session_ids``), messages and catalog entries.

    Each session's compaction summaries (its ``<id>~summary`` session) go with
    it, and the receipt counts them as a session of their own. Sessions go
    ``chunk`` at a time, each chunk in one transaction; a run
    killed partway and run again finishes the job, and running it twice is
    harmless. Other owners' sessions are untouched.

    Args:
        backend: A backend that keeps a catalog.
        owner: Erase all of this owner's sessions...
        session_ids: ...or exactly these (one of the two).
        dry_run: Count what would be deleted; delete nothing.
        chunk: Sessions per transaction.
        progress: Called with each chunk's receipt.

    Returns:
        The receipt: sessions and messages deleted.

    Raises:
        CapabilityMissingError: the backend keeps no catalog.
        ValueError: neither or both of ``owner`` and ``session_ids``, or an owner or
            id no store can keep (a lone surrogate): nothing is erased.

    Example::

        receipt = erase(backend, owner="user-42")
        print(receipt.sessions, receipt.messages)
    """
    _erase_arguments(owner, session_ids, chunk)
    catalog = require_catalog(backend, "erase sessions")
    total = ErasureReceipt(dry_run=dry_run)
    if session_ids is not None:
        for ids in _chunks(session_ids, chunk):
            _count(total, catalog.erase_sessions(_with_summaries(ids), dry_run=dry_run), progress)
        return total
    cursor: str | None = None
    erased: set[str] = set()
    while True:
        # Erased sessions leave the listing, so the next chunk is its head again.
        page = catalog.list_summaries(owner=owner, newest_first=False, limit=chunk,
                                      cursor=cursor if dry_run else None)
        if page.summaries:
            ids = _listed_once(page, erased)
            _count(total, catalog.erase_sessions(_with_summaries(ids), dry_run=dry_run), progress)
        if not page.summaries or (dry_run and page.cursor is None):
            return total
        cursor = page.cursor


async def aerase(backend: object, *, owner: str | None = None,
                 session_ids: Sequence[str] | None = None, dry_run: bool = False,
                 chunk: int = ERASE_CHUNK, progress: Progress | None = None
                 ) -> ErasureReceipt:
    """Async :func:`erase`."""
    _erase_arguments(owner, session_ids, chunk)
    catalog = require_catalog(backend, "erase sessions")
    total = ErasureReceipt(dry_run=dry_run)
    if session_ids is not None:
        for ids in _chunks(session_ids, chunk):
            receipt = await catalog.aerase_sessions(_with_summaries(ids), dry_run=dry_run)
            _count(total, receipt, progress)
        return total
    cursor: str | None = None
    erased: set[str] = set()
    while True:
        page = await catalog.alist_summaries(owner=owner, newest_first=False, limit=chunk,
                                             cursor=cursor if dry_run else None)
        if page.summaries:
            ids = _listed_once(page, erased)
            receipt = await catalog.aerase_sessions(_with_summaries(ids), dry_run=dry_run)
            _count(total, receipt, progress)
        if not page.summaries or (dry_run and page.cursor is None):
            return total
        cursor = page.cursor


def _erase_arguments(owner: str | None, session_ids: Sequence[str] | None, chunk: int
                     ) -> None:
    if (owner is None) == (session_ids is None):
        raise ValueError("erase takes an owner or a list of session ids (one of them)")
    if owner is not None:
        check_text("owner", owner)
    if session_ids is not None:
        for session_id in check_session_ids(session_ids):
            check_session_id(session_id)  # before a chunk is erased, not in a codec midway
    check_limit(chunk)


def _with_summaries(session_ids: list[str]) -> list[str]:
    """The sessions and their compaction summaries' sessions, erased in one transaction.

    A summary (:mod:`chathistory.compaction`) holds what the conversation
    said, so it goes with it; erased apart, a killed run would leave it
    behind for good, since its session would no longer be listed.
    """
    return [*session_ids, *(summary_session_id(session_id) for session_id in session_ids)]


def _chunks(session_ids: Sequence[str], size: int) -> Iterator[list[str]]:
    ids = check_session_ids(session_ids)
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def _listed_once(page: SummaryPage, erased: set[str]) -> list[str]:
    """The page's ids; one listed again after it was erased is an error, not an endless loop."""
    ids = [summary.session_id for summary in page.summaries]
    again = erased.intersection(ids)
    if again:
        raise ChatHistoryError(f"session {sorted(again)[0]!r} is still listed after it was "
                               "erased: the backend's erase_sessions left its catalog entry")
    erased.update(ids)
    return ids


def _count(total: ErasureReceipt, done: ErasureReceipt, progress: Progress | None) -> None:
    total.add(done)
    if progress is not None:
        progress(done)

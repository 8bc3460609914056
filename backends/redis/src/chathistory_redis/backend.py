"""The redis backend: one Redis list per session, with an expiry that follows the last write.

redis-py is imported when a backend is built, so options validate without it (the fake swap).
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from itertools import chain
from typing import Any, ClassVar, TypeVar

from chathistory import (
    BaseBackend,
    ChatHistoryError,
    Operation,
    Runner,
    decode_record,
    operation,
)
from chathistory.capabilities import SessionInfo, check_cutoff, check_record_texts
from chathistory.catalog import (
    UNCHANGED,
    ErasureReceipt,
    MetadataValue,
    SessionSummary,
    SummaryPage,
    Unchanged,
    check_limit,
    check_metadata,
    check_session_ids,
    check_text,
    check_update,
    check_where,
    checked_entry,
    merge_metadata,
    metadata_matches,
    read_cursor,
    write_cursor,
)
from chathistory.records import encode_records
from chathistory_redis import keyspace as ks
from chathistory_redis.config import RedisConfig

__all__ = ["FILTERED_BATCH", "PRUNE_BATCH", "RedisBackend"]

T = TypeVar("T")

PRUNE_BATCH = 500  # sessions a prune reads, and deletes, per round trip
INDEX_BATCH = 1000  # sessions a backfill adds to the index per round trip
FILTERED_BATCH = 200  # sessions a listing filtered by metadata reads per round trip


_raw, _text = ks.utf8, ks.text


def _time(score: bytes | str | None) -> datetime | None:
    return datetime.fromtimestamp(float(score), UTC) if score else None


def _action(value: str | Unchanged | None) -> tuple[str, bytes | str]:
    """An owner or title as the UPDATE script takes it: what to do, and the value ('' for
    none: never an owner's or a title's, which are not empty)."""
    return ("keep", "") if isinstance(value, Unchanged) else ("set", _raw(value or ""))


class RedisBackend(BaseBackend):
    """Chat histories in Redis: each session is one list, appended to in one round trip.

    ``append`` is one Lua script: it pushes the whole batch, restarts the expiry
    (``ttl``) and records the session's write time in the sessions index,
    atomically. ``fetch(limit=n)`` is ``LRANGE key -n -1``; ``clear`` deletes
    the session's key and its index entry. The optional capabilities (listing,
    write times, prune, bulk reads and writes, as records or JSON texts) go
    through the index; on a store never indexed, reads ``SCAN`` instead, since
    reads write nothing. On a Redis Cluster the index has a hash slot of its
    own, so it is written apart from the session (see the docs).

    Each operation is written once, as the Redis commands it sends; the core's
    runner drives it sync and async (see :mod:`chathistory_redis.client`).

    Args:
        config: The options (see :class:`~chathistory_redis.config.RedisConfig`).

    Raises (from every operation):
        chathistory.BackendUnavailableError: Redis cannot be reached, or the
            reply to an append was lost (:class:`~chathistory_redis.errors.ReplyLostError`).
        chathistory.PermissionDeniedError: Redis refused the credentials.
        chathistory.RecordError: a record cannot be encoded as JSON (nothing is written).
        chathistory.ChatHistoryError: Redis refused a command (say, the key holds
            another type of value).

    Example::

        backend = RedisBackend.from_options(url="redis://localhost:6379/0", ttl=3600)
        history = ChatHistory("user-42", backend=backend)
    """

    name: ClassVar[str] = "redis"
    Config: ClassVar[type[RedisConfig]] = RedisConfig
    config: RedisConfig

    def __init__(self, config: RedisConfig) -> None:
        super().__init__(config)
        from chathistory_redis.client import RedisDriver

        self.driver = RedisDriver(config)  # ConfigError for an app client of the wrong kind
        self.runner = Runner(self, self.driver)
        self._cluster = self.driver.cluster
        self._key_prefix = config.effective_key_prefix
        self._index = ks.index_keys(self.config.layout, self._key_prefix)
        self._catalog, self._owned = self._index.catalog, self._index.owned
        self._newest_first = config.layout == "langchain_community"
        self._make_key = ks.langchain_community_key if self._newest_first else ks.chathistory_key
        self._push = "LPUSH" if self._newest_first else "RPUSH"
        self._ttl = str(config.ttl or 0)  # '0': no expiry
        # Whether the sessions written before the index existed are known to be in it.
        self._indexed = False

    def key(self, session_id: str) -> bytes:
        """The Redis key that holds ``session_id``'s messages."""
        return self._make_key(self._key_prefix, session_id)

    @property
    def index_keys(self) -> tuple[bytes, bytes]:
        """The sessions index's two sorted sets: ids (score 0) and write times (seconds)."""
        return self._index.by_id, self._index.by_time

    # The four methods ------------------------------------------------------------------

    @operation(write=True)
    def create_collection(self) -> Operation[None]:
        """Nothing to create; adds the sessions the index lacks (written by
        ``RedisChatMessageHistory`` or an older version) to it: one ``SCAN``, once per store."""
        yield from self._backfill(force=False)

    @operation(write=True)
    def append(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> Operation[None]:
        yield from self._append_texts({session_id: encode_records(records)})

    @operation()
    def fetch(self, session_id: str, *, limit: int | None = None
              ) -> Operation[list[dict[str, Any]]]:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be None or an int >= 0, not {limit!r}")
        if limit == 0:
            return []
        # The newest `limit` values: at the list's head in the langchain layout, else its tail.
        first, last = (0, -1) if limit is None else (0, limit - 1) if self._newest_first else (
            -limit, -1)
        return self._decode((yield ("LRANGE", self.key(session_id), first, last)))

    @operation(write=True)
    def clear(self, session_id: str) -> Operation[None]:
        member = _raw(session_id)
        if not self._cluster:  # the session and its catalog entry go together
            yield ks.evalsha(ks.ERASE, [*self._catalog, self.key(session_id)],
                             [self._owned, "0", "", member])
            return
        # The messages first: a run killed between the two leaves an entry without
        # messages, which the next clear, erase or prune removes, never messages unlisted.
        yield ("DEL", self.key(session_id))
        yield ks.evalsha(ks.ERASE_ENTRIES, self._catalog, [self._owned, "0", "", member])

    # Optional capabilities: the sessions index -----------------------------------------

    @operation()
    def list_sessions(self, *, after: str | None = None, limit: int = 100
                      ) -> Operation[list[SessionInfo]]:
        """Up to ``limit`` sessions with messages, by id, after ``after``; writes nothing.

        Through the index (one script, one pipeline of ``LLEN``), or on a store never
        indexed by one ``SCAN`` of the key prefix per page (write times ``None`` there)."""
        limit = check_limit(limit)
        if (yield from self._is_indexed()):
            return (yield from self._indexed_page(after, limit))
        return (yield from self._scanned_page(after, limit))

    @operation()
    def last_write(self, session_id: str) -> Operation[datetime | None]:
        """When ``session_id`` last had messages appended through this backend (UTC): ``None``
        for a session the index does not know (one of a store never indexed). Writes nothing."""
        written, exists = yield ks.Pipeline([
            ("ZSCORE", self._index.by_time, _raw(session_id)), ("EXISTS", self.key(session_id))])
        return _time(written) if exists else None

    @operation(write=True)
    def delete_sessions_before(self, cutoff: datetime, *, dry_run: bool = False,
                               owner: str | None = None) -> Operation[int]:
        """Delete the sessions last updated before ``cutoff`` (of ``owner`` only, if given),
        with their catalog entries, :data:`PRUNE_BATCH` at a time as :meth:`erase_sessions`
        does; return how many held messages. A failure after a batch is not retried (the
        prune, repeated, would not count that batch): it says how many sessions were pruned."""
        seconds = repr(check_cutoff(cutoff).timestamp())
        check_text("owner", owner)
        count = 0
        if not dry_run:
            yield from self._backfill(force=False)
        elif not (yield from self._is_indexed()):
            # A dry run writes nothing, so it does not add the sessions the index lacks;
            # a prune would, as written now: they count when the cutoff is later than that.
            count = yield from self._unindexed_written_before(cutoff)
        by_time = self._index.by_time if owner is None else self._index.owned + _raw(owner)
        older = ("ZRANGEBYSCORE", by_time, "-inf", f"({seconds}", "LIMIT")
        offset = pruned = 0
        try:
            while ids := (yield (*older, offset, PRUNE_BATCH)):
                sessions, _, held = yield from self._erase(ids, dry_run, seconds)
                count, pruned = count + held, pruned + (0 if dry_run else sessions)
                if dry_run:  # nothing deleted: the next batch is further on
                    offset += len(ids)
                if len(ids) < PRUNE_BATCH:
                    break
        except Exception as error:
            if pruned:
                from chathistory_redis.errors import after_some_done  # (loaded with redis-py)

                raise after_some_done(error, f"{pruned} sessions were pruned",
                                      where=self.driver.where) from error
            raise
        return count

    @operation()
    def fetch_many(self, session_ids: Sequence[str]
                   ) -> Operation[dict[str, list[dict[str, Any]]]]:
        """Every message of each session that has any, in one pipeline of ``LRANGE``."""
        return (yield from self._fetch_lists(session_ids, self._decode))

    @operation(write=True)
    def append_many(self, batches: Mapping[str, Sequence[Mapping[str, Any]]]
                    ) -> Operation[None]:
        """Append to many sessions in one script: all of them or none (not on a cluster,
        where each session is appended on its own node)."""
        yield from self._append_texts({session_id: encode_records(records)
                                       for session_id, records in batches.items()})

    @operation()
    def fetch_many_text(self, session_ids: Sequence[str]) -> Operation[dict[str, list[str]]]:
        """:meth:`fetch_many` with each message as the JSON text Redis holds; only a value
        not starting with ``{`` is parsed, to be refused as :meth:`fetch` would, or trimmed."""
        return (yield from self._fetch_lists(session_ids, self._texts))

    @operation(write=True)
    def append_many_text(self, batches: Mapping[str, Sequence[str]]) -> Operation[None]:
        """:meth:`append_many` of messages given as JSON texts, stored as they are given.

        Raises:
            chathistory.RecordError: a text is not a ``str`` starting with ``{``, or holds
                a lone surrogate (nothing is written; a cluster would fail midway).
            TypeError: a session's texts are one ``str``, not a list (nothing is written).
        """
        check_record_texts(batches)
        yield from self._append_texts(batches)

    @operation(write=True)
    def reindex(self) -> Operation[int]:
        """Add every session of the key prefix that the index lacks (one ``SCAN``; needed
        only while ``RedisChatMessageHistory`` writes beside this backend), and drop the
        entries of sessions that no longer exist; return how many sessions were found."""
        return (yield from self._backfill(force=True))

    # Optional capability: the session catalog -------------------------------------------

    @operation()
    def list_summaries(self, *, owner: str | None = None, newest_first: bool = True,
                       where: Mapping[str, MetadataValue] | None = None, limit: int = 20,
                       cursor: str | None = None) -> Operation[SummaryPage]:
        """A page of summaries by ``(updated_at, session_id)``: a rank range of the owner's
        sorted set (or the index's), one script, then one pipeline of ``LLEN``. A metadata
        filter is applied to what the range returns, :data:`FILTERED_BATCH` at a time."""
        check_text("owner", owner)
        wanted = check_where(where)
        limit = check_limit(limit)
        position = self._position(read_cursor(cursor, newest_first, (str, str)))
        found: list[tuple[SessionSummary, list[str]]] = []
        while len(found) <= limit:
            batch = limit + 1 - len(found)
            if wanted:
                batch = max(batch, FILTERED_BATCH)
            reply = yield ks.evalsha(ks.CATALOG_PAGE, self._catalog, [
                self._owned, "" if owner is None else _raw(owner),
                "desc" if newest_first else "asc", batch, *position])
            summaries = yield from self._summaries(reply)
            for summary, seconds in summaries:
                if summary is not None and metadata_matches(summary.metadata, wanted):
                    found.append((summary, [seconds, summary.session_id]))
                    if len(found) > limit:
                        break
            if len(summaries) < batch:
                break
            position = [summaries[-1][1], _text(reply[0][-1])]
        more = len(found) > limit  # the cursor is the last shown's position
        return SummaryPage([summary for summary, _ in found[:limit]],
                           write_cursor(found[limit - 1][1], newest_first) if more else None)

    @operation()
    def session_summaries(self, session_ids: Sequence[str]
                          ) -> Operation[dict[str, SessionSummary]]:
        """The summaries of those of ``session_ids`` the catalog knows: one script, one
        pipeline of ``LLEN``."""
        return (yield from self._read_summaries(session_ids))

    @operation(write=True)
    def update_session(self, session_id: str, *, owner: str | Unchanged | None = UNCHANGED,
                       title: str | Unchanged | None = UNCHANGED,
                       metadata: Mapping[str, Any] | None = None,
                       replace_metadata: bool = False,
                       only_if_unset: bool = False) -> Operation[SessionSummary]:
        """One script in the index's slot; merged metadata is written only if what it was
        merged from is still stored (else read and merged again)."""
        check_update(owner, title, metadata)
        member = _raw(session_id)
        while True:
            stored_text, merged_text = "", ""
            if metadata is not None:
                if not replace_metadata:
                    stored_text = _text((yield ("HGET", self._index.metadata, member)) or b"")
                stored = json.loads(stored_text) if stored_text else {}
                merged = merge_metadata(stored, metadata, replace_metadata)
                merged_text = check_metadata(merged) if merged else ""
            done = yield ks.evalsha(ks.UPDATE, self._catalog, [
                self._owned, member, *_action(owner), *_action(title),
                "keep" if metadata is None else "set" if replace_metadata else "merged",
                merged_text, stored_text,
                "1" if only_if_unset else "0"])
            if int(done):
                break
        summaries = yield from self._read_summaries([session_id])
        return summaries[session_id]

    @operation(write=True)
    def erase_sessions(self, session_ids: Sequence[str], *, dry_run: bool = False
                       ) -> Operation[ErasureReceipt]:
        """One script on one server; on a cluster, one in each session's slot, then one in
        the index's (see :meth:`_erase`)."""
        ids = [_raw(session_id) for session_id in check_session_ids(session_ids)]
        receipt = ErasureReceipt(dry_run=dry_run)
        if ids:
            receipt.sessions, receipt.messages, _ = yield from self._erase(ids, dry_run)
        return receipt

    @operation(write=True)
    def restore_summaries(self, summaries: Sequence[SessionSummary]) -> Operation[None]:
        """Each summary's owner, title, metadata and both times, whole, one script per
        :data:`INDEX_BATCH`; the count stays the list's own length."""
        entries: list[bytes | str] = []
        for summary in summaries:
            text = checked_entry(summary)[2]
            entries += [_raw(summary.session_id), repr(summary.created_at.timestamp()),
                        repr(summary.updated_at.timestamp()), _raw(summary.owner or ""),
                        _raw(summary.title or ""), "" if text == "{}" else text]
        for start in range(0, len(entries), 6 * INDEX_BATCH):
            yield ks.evalsha(ks.RESTORE, self._catalog,
                             [self._owned, *entries[start:start + 6 * INDEX_BATCH]])

    def _read_summaries(self, session_ids: Sequence[str]
                        ) -> Operation[dict[str, SessionSummary]]:
        ids = check_session_ids(session_ids)
        if not ids:
            return {}
        reply = yield ks.evalsha(ks.SUMMARIES, self._catalog,
                                 [self._owned, *map(_raw, ids)])
        return {summary.session_id: summary
                for summary, _ in (yield from self._summaries(reply)) if summary is not None}

    def _position(self, cursor: list[Any] | None) -> list[bytes | str]:
        if cursor is None:
            return ["", ""]
        seconds, session_id = cursor
        try:
            float(seconds)
        except ValueError:
            raise ValueError("not a cursor of this backend's listings") from None
        return [seconds, _raw(session_id)]

    def _summaries(self, reply: list[list[Any]]
                   ) -> Operation[list[tuple[SessionSummary | None, str]]]:
        """What ``describe`` returned, with each list's length: a summary (``None`` for a
        session without messages that the catalog does not keep, or does not know) and
        its time as Redis wrote it."""
        ids, times, owners, titles, metadata, created, kept = reply
        counts = yield ks.Pipeline([("LLEN", self.key(_text(id_))) for id_ in ids])
        found: list[tuple[SessionSummary | None, str]] = []
        for id_, at, owner, title, meta, made, is_kept, count in zip(
                ids, times, owners, titles, metadata, created, kept, counts, strict=True):
            seconds = _text(at)
            if not seconds or not (int(count) or int(is_kept)):
                found.append((None, seconds))
                continue
            updated = datetime.fromtimestamp(float(seconds), UTC)
            found.append((SessionSummary(
                _text(id_), _text(owner) or None, _text(title) or None,
                json.loads(meta) if meta else {}, _time(made) or updated, updated,
                int(count)), seconds))
        return found

    # Steps the operations share ----------------------------------------------------------

    def _append_texts(self, batches: Mapping[str, Sequence[str]]) -> Operation[None]:
        """Append each session's JSON texts (checked or encoded before any I/O)."""
        batches = {session_id: texts for session_id, texts in batches.items() if texts}
        if not batches:
            return
        if not self._cluster:  # one script: the sessions, the index and the catalog together
            keys = [*self._catalog, *(self.key(session_id) for session_id in batches)]
            yield ks.Once(ks.evalsha(ks.APPEND, keys, [
                self._owned, self._push, self._ttl, *map(_raw, batches),
                *(len(values) for values in batches.values()),
                *chain.from_iterable(batches.values())]))
            return
        # A cluster: the index's slot first, so a session written is always indexed and
        # listed under its owner; an entry whose messages were then not written is not
        # listed (no messages, nothing kept) and goes at expiry or the next reindex.
        yield ks.evalsha(ks.INDEX, self._catalog,
                         [self._owned, "CH", self._ttl, *map(_raw, batches)])
        yield from self._each_once([
            ks.evalsha(ks.PUSH, [self.key(session_id)], [self._push, self._ttl, *values])
            for session_id, values in batches.items()], "sessions were appended", ks.Once)

    def _each_once(self, commands: list[ks.Command], done: str, once: type[ks.Once]
                   ) -> Operation[list[Any]]:
        """Send ``commands`` in turn, each as ``once``; their replies. A failure after the
        first, transient or not, is not retried either, since retrying would run the first
        again: the error says how many ``done``."""
        replies: list[Any] = []
        for command in commands:
            try:
                replies.append((yield once(command)))
            except Exception as error:
                if replies:
                    from chathistory_redis.errors import after_some_done  # (loaded with redis-py)

                    raise after_some_done(error, f"{len(replies)} of {len(commands)} {done}",
                                          where=self.driver.where) from error
                raise
        return replies

    def _erase(self, ids: list[bytes], dry_run: bool, cutoff: str = ""
               ) -> Operation[tuple[int, int, int]]:
        """Delete the sessions ``ids`` (UTF-8) and their catalog entries (with a ``cutoff``,
        in seconds, those last written before it only): the sessions deleted (with messages,
        or kept in the catalog), their messages, and the sessions that held messages.

        No script that deletes is sent twice (it would count nothing the second time): a
        lost reply is ``ReplyLostError``. On a cluster each session's messages go in its
        own slot, then the entries in the index's: a run killed between leaves entries
        without messages, which the next run deletes."""
        dry = "1" if dry_run else "0"
        if not self._cluster:
            erase = ks.evalsha(ks.ERASE, [*self._catalog, *(self.key(_text(id_)) for id_ in ids)],
                               [self._owned, dry, cutoff, *ids])
            sessions, messages, held = yield erase if dry_run else ks.Erasure(erase)
            return int(sessions), int(messages), int(held)
        scripts = [*(ks.evalsha(ks.ERASE_MESSAGES, [self.key(_text(id_))], [dry], body=dry_run)
                     for id_ in ids),
                   ks.evalsha(ks.ERASE_ENTRIES, self._catalog, [self._owned, dry, cutoff, *ids],
                              body=dry_run)]
        if dry_run:  # deletes nothing: may be repeated
            *counts, kept = yield ks.Pipeline(scripts)
        else:
            *counts, kept = yield from self._each_once(
                scripts, "deleting scripts ran (what they deleted is not counted; the same "
                "erase or prune run again finishes it)", ks.Erasure)
        deleted = [int(count) for count, is_kept in zip(counts, kept, strict=True)
                   if int(count) or int(is_kept)]
        return len(deleted), sum(deleted), sum(1 for count in deleted if count)

    def _fetch_lists(self, session_ids: Sequence[str], convert: Callable[[list[Any]], list[T]]
                     ) -> Operation[dict[str, list[T]]]:
        """Each session's values in one pipeline, through ``convert`` (to records or texts)."""
        if not session_ids:
            return {}
        lists = yield ks.Pipeline([("LRANGE", self.key(session_id), 0, -1)
                                   for session_id in session_ids])
        return {session_id: convert(values)
                for session_id, values in zip(session_ids, lists, strict=True) if values}

    def _is_indexed(self) -> Operation[bool]:
        """Whether the index holds every session (its ``scanned`` marker is set); only reads."""
        if not self._indexed and (yield ("EXISTS", self._index.scanned)):
            self._indexed = True
        return self._indexed

    def _scan_ids(self) -> Operation[list[bytes]]:
        """The ids (UTF-8) of the sessions whose keys exist, each once, in the index's order."""
        keys = yield ks.Scan(ks.scan_pattern(self.config.layout, self._key_prefix))
        if keys and not isinstance(keys[0], bytes):  # an application's decoding client
            keys = [_raw(key) for key in keys]
        # A SCAN may return a key twice; a set keeps each session once.
        return sorted(ks.session_ids_of_keys(self.config.layout, self._key_prefix, keys))

    def _backfill(self, *, force: bool) -> Operation[int]:
        """Add the sessions the index lacks (found by SCAN), unless that was done before;
        with ``force`` (a reindex) also drop the entries of sessions that no longer exist."""
        if not force and (yield from self._is_indexed()):
            return 0
        found = yield from self._scan_ids()
        for start in range(0, len(found), INDEX_BATCH):
            yield ks.evalsha(ks.INDEX, self._catalog,
                             [self._owned, "NX", self._ttl, *found[start:start + INDEX_BATCH]])
        yield ("SET", self._index.scanned, datetime.now(UTC).isoformat())
        self._indexed = True
        if force:
            yield from self._sweep()
        return len(found)

    def _sweep(self) -> Operation[None]:
        """Drop from the index every session that has no messages any more (it expired, or was
        deleted behind the backend's back) and was not written since it was found so."""
        low = b"-"
        while True:
            ids, times = yield ks.evalsha(ks.LIST_PAGE, self.index_keys, [low, INDEX_BATCH])
            # Checked after the times were read: a session written in between has a new
            # time, and its entry is then kept.
            exists = yield ks.Pipeline([("EXISTS", self.key(_text(id_))) for id_ in ids])
            gone = [value for id_, written, found in zip(ids, times, exists, strict=True)
                    if not found for value in (id_, written)]
            if gone:
                yield ks.evalsha(ks.UNINDEX_IF_UNCHANGED, self._catalog, [self._owned, *gone])
            if len(ids) < INDEX_BATCH:
                return
            low = b"(" + _raw(ids[-1])

    def _indexed_page(self, after: str | None, limit: int) -> Operation[list[SessionInfo]]:
        found: list[SessionInfo] = []
        low = b"-" if after is None else b"(" + _raw(after)
        while len(found) < limit:
            wanted = limit - len(found)
            ids, times = yield ks.evalsha(ks.LIST_PAGE, self.index_keys, [low, wanted])
            counts = yield ks.Pipeline([("LLEN", self.key(_text(id_))) for id_ in ids])
            # A session that expired (ttl) or was deleted behind the backend's back is
            # skipped, and left in the index: appends forget expired ones, reindex the rest.
            found += [SessionInfo(_text(id_), int(count), _time(written))
                      for id_, written, count in zip(ids, times, counts, strict=True) if count]
            if len(ids) < wanted:
                break
            low = b"(" + _raw(ids[-1])
        return found

    def _scanned_page(self, after: str | None, limit: int) -> Operation[list[SessionInfo]]:
        """A page of a store never indexed: ids from one SCAN, counts and times in a pipeline."""
        ids = yield from self._scan_ids()
        start = 0 if after is None else bisect_right(ids, _raw(after))
        found: list[SessionInfo] = []
        while len(found) < limit and start < len(ids):
            part = ids[start:start + limit - len(found)]
            start += len(part)
            replies = yield ks.Pipeline([command for id_ in part for command in (
                ("LLEN", self.key(_text(id_))), ("ZSCORE", self._index.by_time, id_))])
            found += [SessionInfo(_text(id_), int(count), _time(written))
                      for id_, count, written in zip(part, replies[::2], replies[1::2],
                                                     strict=True)
                      if count]  # deleted since the scan
        return found

    def _unindexed_written_before(self, cutoff: datetime) -> Operation[int]:
        """How many sessions the index lacks, if a backfill now would date them before cutoff."""
        if cutoff <= datetime.now(UTC):
            return 0
        ids = yield from self._scan_ids()
        if not ids:
            return 0
        known = yield ks.Pipeline([("ZSCORE", self._index.by_time, id_) for id_ in ids])
        return sum(1 for written in known if written is None)

    # Records -----------------------------------------------------------------------------

    def _texts(self, values: list[bytes | str]) -> list[str]:
        """A session's values as text, oldest first; only one not starting with ``{`` is
        parsed (refused as :meth:`_decode` refuses it)."""
        values = values[::-1] if self._newest_first else values
        with suppress(UnicodeDecodeError):
            texts = [_text(value) for value in values]
            if all(text[:1] == "{" for text in texts):
                return texts
        for position, value in enumerate(values):
            self._decode_one(position, value)  # raises unless it is a JSON object's text
        return [_text(value).strip(" \t\n\r") for value in values]  # JSON's whitespace around

    def _decode(self, values: list[bytes | str]) -> list[dict[str, Any]]:
        values = values[::-1] if self._newest_first else values
        # One json.loads for the whole list is twice as fast as one per value; if the
        # list is not one object per value, each is decoded alone, to name the bad one.
        with suppress(ValueError):
            records: list[dict[str, Any]] = json.loads(b"[" + b",".join(map(_raw, values)) + b"]")
            if len(records) == len(values) and all(type(record) is dict for record in records):
                return records
        return [self._decode_one(position, value) for position, value in enumerate(values)]

    def _decode_one(self, position: int, value: bytes | str) -> dict[str, Any]:
        try:
            return decode_record(value)  # a RecordError unless it is a JSON object's text
        except ValueError as exc:
            raise ChatHistoryError(
                f"backend 'redis' ({self.driver.where}): value {position} of this session's "
                f"list is not a JSON message: {exc}") from None

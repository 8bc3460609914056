"""The redis backend: one Redis list per session, with an expiry that follows the last write.

redis-py is imported when a backend is built, not with this module, so the
options can be validated (as the fake swap does) without the driver.
"""

from __future__ import annotations

import asyncio
import json
from bisect import bisect_right
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from itertools import chain
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

from chathistory import (
    BaseBackend,
    ChatHistoryError,
    RecordError,
    aretry_transient,
    decode_record,
    encode_record,
    retry_transient,
)
from chathistory.capabilities import SessionInfo, check_page_limit, check_record_texts
from chathistory_redis import scripts
from chathistory_redis.config import RedisConfig
from chathistory_redis.keys import (
    chathistory_key,
    index_keys,
    langchain_community_key,
    scan_pattern,
    session_ids_of_keys,
)

if TYPE_CHECKING:
    from chathistory_redis.client import AsyncCommands, Command, Commands

__all__ = ["PRUNE_BATCH", "RedisBackend"]

T = TypeVar("T")

PRUNE_BATCH = 500
"""Sessions a prune reads, and deletes, per round trip."""

INDEX_BATCH = 1000
"""Sessions a backfill adds to the index per round trip."""


# The optional capabilities are written once, as generators of the requests they make
# (each sent back its reply), and run by a sync and an async driver.
@dataclass(frozen=True)
class Call:
    command: Command
    write: bool = False  # True: not repeated once sent (see errors.py)


@dataclass(frozen=True)
class Batch:
    commands: Sequence[Command]  # every one may be repeated


@dataclass(frozen=True)
class Scan:
    pattern: bytes


Request = Call | Batch | Scan
Steps = Generator[Request, Any, T]


def _raw(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else value


def _time(score: bytes | str | float | None) -> datetime | None:
    if score is None or score in (b"", ""):
        return None
    return datetime.fromtimestamp(float(score), UTC)


def _seconds(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("cutoff must be timezone-aware (for example datetime.now(UTC))")
    return repr(moment.timestamp())


class RedisBackend(BaseBackend):
    """Chat histories in Redis: each session is one list, appended to in one round trip.

    * ``append`` is one Lua script: it pushes the whole batch, sets the expiry
      with ``ttl`` (so every write restarts the session's expiry) and records the
      session and its write time in the sessions index, atomically, so a batch
      and its index entry are stored whole or not at all.
    * ``fetch(limit=n)`` is ``LRANGE key -n -1``: it reads ``n`` values however
      long the session is.
    * ``clear`` deletes the session's key and its index entry, nothing else.

    Optional capabilities (``chathistory.capabilities``): ``list_sessions``
    (pages of ids through the index, with counts and write times; by ``SCAN`` of
    a store never indexed, since reads write nothing),
    ``last_write``, ``delete_sessions_before``, ``fetch_many``/``append_many`` and
    ``fetch_many_text``/``append_many_text`` (the same, each message as its JSON
    text: what Redis holds), each with its async twin. On a Redis Cluster the
    index lives in a hash slot of its own, so it is written in a separate
    command from the session (see the docs for what is atomic there).

    The sync methods use a ``redis.BlockingConnectionPool``, the async ones
    ``redis.asyncio`` natively (a blocking pool per event loop, closed when
    that loop shuts down); see :mod:`chathistory_redis.client`. A lost
    connection is re-established on the next call. Reads and deletes are
    retried; an append is retried only when it surely did not run (it was not
    sent, or Redis answered ``LOADING``), since repeating one Redis may have
    run would store the batch twice.

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
        from chathistory_redis import client, errors

        self._clients = client.Clients(config)  # ConfigError for an app client of the wrong kind
        self._call, self._acall = client.call, client.acall
        self._is_transient = errors.is_transient
        self._translate = partial(errors.translate, address=config.address)
        self._layout = config.layout
        self._key_prefix = config.effective_key_prefix
        self._index = index_keys(self._layout, self._key_prefix)
        self._newest_first = config.layout == "langchain_community"
        self._make_key = langchain_community_key if self._newest_first else chathistory_key
        self._push = "LPUSH" if self._newest_first else "RPUSH"
        self._ttl = str(config.ttl or 0)  # '0': no expiry
        self._address = config.address
        # The hot path's command, but for the session: EVALSHA APPEND by-id by-time <key> ...
        self._append_head: Command = ("EVALSHA", scripts.APPEND.sha, 3, self._index.by_id,
                                      self._index.by_time)
        # Whether the sessions written before the index existed are known to be in it.
        self._indexed = False
        # An application's sync client without an async one: the async twins run
        # the sync methods in a worker thread, so both reach the same server.
        self._async_in_thread = config.client is not None and config.async_client is None

    def key(self, session_id: str) -> bytes:
        """The Redis key that holds ``session_id``'s messages."""
        return self._make_key(self._key_prefix, session_id)

    @property
    def index_keys(self) -> tuple[bytes, bytes]:
        """The sessions index's two sorted sets: ids (score 0) and write times (seconds)."""
        return self._index.by_id, self._index.by_time

    # Drivers ----------------------------------------------------------------------------

    def _retry(self, call: Callable[[], T]) -> T:
        return retry_transient(call, backend=self.name, is_transient=self._is_transient,
                               translate=self._translate)

    def _do(self, commands: Commands, request: Request) -> Any:
        if isinstance(request, Call):
            return self._retry(lambda: self._call(commands, request.command,
                                                  write=request.write))
        if isinstance(request, Batch):
            return self._retry(lambda: commands.pipeline(request.commands))
        return self._retry(lambda: commands.scan(request.pattern))

    async def _ado(self, commands: AsyncCommands, request: Request) -> Any:
        async def attempt() -> Any:
            if isinstance(request, Call):
                return await self._acall(commands, request.command, write=request.write)
            if isinstance(request, Batch):
                return await commands.pipeline(request.commands)
            return await commands.scan(request.pattern)

        return await aretry_transient(attempt, backend=self.name,
                                      is_transient=self._is_transient,
                                      translate=self._translate)

    def _drive(self, make: Callable[[bool], Steps[T]]) -> T:
        commands = self._clients.sync
        steps = make(commands.cluster)
        reply: Any = None
        try:
            while True:
                reply = self._do(commands, steps.send(reply))
        except StopIteration as done:
            return cast(T, done.value)

    async def _adrive(self, make: Callable[[bool], Steps[T]]) -> T:
        commands = await self._clients.for_running_loop()
        steps = make(commands.cluster)
        reply: Any = None
        try:
            while True:
                reply = await self._ado(commands, steps.send(reply))
        except StopIteration as done:
            return cast(T, done.value)

    # The four methods, as steps ---------------------------------------------------------

    def _append_command(self, session_id: str, values: list[str]) -> Command:
        """One session's append on a single server: the hot path, built directly."""
        return (*self._append_head, self.key(session_id), self._push, self._ttl,
                _raw(session_id), len(values), *values)

    def _append_steps(self, batches: Mapping[str, Sequence[str]], cluster: bool
                      ) -> Steps[None]:
        by_id, by_time = self.index_keys
        if not cluster:  # one script: the sessions and the index together
            keys = [by_id, by_time, *(self.key(session_id) for session_id in batches)]
            args: list[bytes | str | int] = [self._push, self._ttl, *map(_raw, batches),
                    *(len(values) for values in batches.values()),
                    *chain.from_iterable(batches.values())]
            yield Call(scripts.evalsha(scripts.APPEND, keys, args), write=True)
            return
        # A cluster: the index's slot first (so a session written is always indexed;
        # an entry whose session was not written is dropped by the next listing).
        yield Call(scripts.evalsha(scripts.INDEX, [by_id, by_time],
                                   ["NOW", self._ttl, *map(_raw, batches)]))
        for session_id, values in batches.items():
            yield Call(scripts.evalsha(scripts.PUSH, [self.key(session_id)],
                                       [self._push, self._ttl, *values]), write=True)

    def _clear_steps(self, session_id: str, cluster: bool) -> Steps[None]:
        by_id, by_time = self.index_keys
        if not cluster:
            yield Call(scripts.evalsha(scripts.CLEAR, [self.key(session_id), by_id, by_time],
                                       [_raw(session_id)]))
            return
        yield Call(("DEL", self.key(session_id)))
        member = _raw(session_id)
        yield Batch([("ZREM", by_id, member), ("ZREM", by_time, member)])

    def _fetch_command(self, session_id: str, limit: int | None) -> Command:
        if limit is None:
            return ("LRANGE", self.key(session_id), 0, -1)
        if limit < 0:
            raise ValueError(f"limit must be None or an int >= 0, not {limit!r}")
        if self._newest_first:
            return ("LRANGE", self.key(session_id), 0, limit - 1)
        return ("LRANGE", self.key(session_id), -limit, -1)

    def _run(self, command: Command) -> Any:
        commands = self._clients.sync
        return self._retry(lambda: commands.run(command, write=False))

    async def _arun(self, command: Command) -> Any:
        commands = await self._clients.for_running_loop()
        return await aretry_transient(lambda: commands.run(command, write=False),
                                      backend=self.name, is_transient=self._is_transient,
                                      translate=self._translate)

    @staticmethod
    def _encoded(batches: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, list[str]]:
        """Each session's records as JSON (before any I/O), empty batches left out."""
        encoded = {session_id: [encode_record(record) for record in records]
                   for session_id, records in batches.items()}
        return {session_id: values for session_id, values in encoded.items() if values}

    @staticmethod
    def _checked(batches: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
        """Each session's JSON texts, checked before any I/O as ``encode_record`` checks what
        it makes (each a JSON object's text, and UTF-8: a lone surrogate would fail midway
        on a cluster), empty batches left out."""
        check_record_texts(batches)
        for session_id, texts in batches.items():
            for position, text in enumerate(texts):
                if not text.isascii():
                    try:
                        text.encode("utf-8")
                    except UnicodeEncodeError:
                        raise RecordError(
                            f"record {position} of session {session_id!r} cannot be stored "
                            "as UTF-8: it holds a lone surrogate") from None
        return {session_id: list(texts) for session_id, texts in batches.items() if texts}

    # Sync -------------------------------------------------------------------------------

    def create_collection(self) -> None:
        """Nothing to create; adds sessions written before the index existed to it, once.

        Sessions written by ``RedisChatMessageHistory`` (or by a version of this
        backend without the index) are found with one ``SCAN`` of the key
        prefix, once per store: here (``ChatHistory`` calls it on its first use),
        at a prune or at :meth:`reindex`; the reads (``list_sessions``...) never.
        """
        self._drive(lambda cluster: self._index_steps(force=False))

    def append(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        values = [encode_record(record) for record in records]  # before any I/O
        if not values:
            return
        commands = self._clients.sync
        if commands.cluster:
            self._drive(partial(self._append_steps, {session_id: values}))
            return
        command = self._append_command(session_id, values)
        self._retry(lambda: self._call(commands, command, write=True))

    def fetch(self, session_id: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        command = self._fetch_command(session_id, limit)
        return [] if limit == 0 else self._decode(self._run(command))

    def clear(self, session_id: str) -> None:
        self._drive(partial(self._clear_steps, session_id))

    def close(self) -> None:
        """Close the connection pools this backend made. An application's clients stay open."""
        self._clients.close()

    # Async ------------------------------------------------------------------------------

    async def acreate_collection(self) -> None:
        """:meth:`create_collection`, natively async."""
        if self._async_in_thread:
            return await super().acreate_collection()
        await self._adrive(lambda cluster: self._index_steps(force=False))

    async def aappend(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        if self._async_in_thread:
            return await super().aappend(session_id, records)
        values = [encode_record(record) for record in records]  # before any I/O
        if not values:
            return
        commands = await self._clients.for_running_loop()
        if commands.cluster:
            await self._adrive(partial(self._append_steps, {session_id: values}))
            return
        command = self._append_command(session_id, values)
        await aretry_transient(lambda: self._acall(commands, command, write=True),
                               backend=self.name, is_transient=self._is_transient,
                               translate=self._translate)

    async def afetch(self, session_id: str, *, limit: int | None = None
                     ) -> list[dict[str, Any]]:
        if self._async_in_thread:
            return await super().afetch(session_id, limit=limit)
        command = self._fetch_command(session_id, limit)
        return [] if limit == 0 else self._decode(await self._arun(command))

    async def aclear(self, session_id: str) -> None:
        if self._async_in_thread:
            return await super().aclear(session_id)
        await self._adrive(partial(self._clear_steps, session_id))

    async def aclose(self) -> None:
        """Close this event loop's pool at once, and the others as :meth:`close` does."""
        await self._clients.aclose()

    # Optional capabilities: the sessions index ------------------------------------------

    def _indexed_steps(self) -> Steps[bool]:
        """Whether the index holds every session (its ``scanned`` marker is set); only reads."""
        if not self._indexed and (yield Call(("EXISTS", self._index.scanned))):
            self._indexed = True
        return self._indexed

    def _scan_steps(self) -> Steps[list[bytes]]:
        """The ids of the sessions whose keys exist (one ``SCAN`` of the key prefix), each once,
        in the index's order (their UTF-8 bytes); only reads."""
        keys = yield Scan(scan_pattern(self._layout, self._key_prefix))
        if keys and not isinstance(keys[0], bytes):  # an application's decoding client
            keys = [_raw(key) for key in keys]
        # A SCAN may return a key twice; a set keeps each session once.
        return sorted(session_ids_of_keys(self._layout, self._key_prefix, keys))

    def _index_steps(self, *, force: bool) -> Steps[int]:
        """Add the sessions the index lacks (found by SCAN), unless that was done before.

        With ``force`` (a reindex) also drop the entries of sessions that no longer exist.
        """
        if not force and (yield from self._indexed_steps()):
            return 0
        found = yield from self._scan_steps()
        by_id, by_time = self.index_keys
        for start in range(0, len(found), INDEX_BATCH):
            yield Call(scripts.evalsha(scripts.INDEX, [by_id, by_time],
                                       ["NX", self._ttl, *found[start:start + INDEX_BATCH]]))
        yield Call(("SET", self._index.scanned, datetime.now(UTC).isoformat()))
        self._indexed = True
        if force:
            yield from self._sweep_steps()
        return len(found)

    def _sweep_steps(self) -> Steps[None]:
        """Drop from the index every session that has no messages any more (it expired, or was
        deleted behind the backend's back) and was not written since it was found so."""
        by_id, by_time = self.index_keys
        low = b"-"
        while True:
            ids, times = yield Call(scripts.evalsha(scripts.LIST_PAGE, [by_id, by_time],
                                                    [low, INDEX_BATCH]))
            if not ids:
                return
            # Checked after the times were read: a session written in between has a new
            # time, and its entry is then kept.
            exists = yield Batch([("EXISTS", self.key(_text(member))) for member in ids])
            gone = [value for member, written, found in zip(ids, times, exists, strict=True)
                    if not found for value in (member, written)]
            if gone:
                yield Call(scripts.evalsha(scripts.UNINDEX_IF_UNCHANGED, [by_id, by_time],
                                           gone))
            if len(ids) < INDEX_BATCH:
                return
            low = b"(" + _raw(ids[-1])

    def _list_steps(self, after: str | None, limit: int) -> Steps[list[SessionInfo]]:
        """A page of sessions; only reads (a listing is what read-only commands do)."""
        limit = check_page_limit(limit)
        if (yield from self._indexed_steps()):
            return (yield from self._indexed_page_steps(after, limit))
        return (yield from self._scanned_page_steps(after, limit))

    def _indexed_page_steps(self, after: str | None, limit: int
                            ) -> Steps[list[SessionInfo]]:
        by_id, by_time = self.index_keys
        found: list[SessionInfo] = []
        low = b"-" if after is None else b"(" + _raw(after)
        while len(found) < limit:
            wanted = limit - len(found)
            ids, times = yield Call(scripts.evalsha(scripts.LIST_PAGE, [by_id, by_time],
                                                    [low, wanted]))
            if not ids:
                break
            counts = yield Batch([("LLEN", self.key(_text(member))) for member in ids])
            # A session that expired (ttl) or was deleted behind the backend's back is
            # skipped, and left in the index: appends forget expired ones, reindex the rest.
            found += [SessionInfo(_text(member), int(count), _time(written))
                      for member, written, count in zip(ids, times, counts, strict=True)
                      if count]
            if len(ids) < wanted:
                break
            low = b"(" + _raw(ids[-1])
        return found

    def _scanned_page_steps(self, after: str | None, limit: int
                            ) -> Steps[list[SessionInfo]]:
        """A page of a store whose index was never built: the ids from one SCAN, the counts
        and the write times the index may know of from one pipeline."""
        ids = yield from self._scan_steps()
        start = 0 if after is None else bisect_right(ids, _raw(after))
        by_time = self._index.by_time
        found: list[SessionInfo] = []
        while len(found) < limit and start < len(ids):
            part = ids[start:start + limit - len(found)]
            start += len(part)
            replies = yield Batch([command for member in part for command in (
                ("LLEN", self.key(_text(member))), ("ZSCORE", by_time, member))])
            found += [SessionInfo(_text(member), int(count), _time(written))
                      for member, count, written in zip(part, replies[::2], replies[1::2],
                                                        strict=True)
                      if count]  # deleted since the scan
        return found

    def _last_write_steps(self, session_id: str) -> Steps[datetime | None]:
        written, exists = yield Batch([("ZSCORE", self._index.by_time, _raw(session_id)),
                                       ("EXISTS", self.key(session_id))])
        return _time(written) if exists else None

    def _prune_steps(self, cutoff: datetime, dry_run: bool, cluster: bool) -> Steps[int]:
        seconds = _seconds(cutoff)
        count = 0
        if not dry_run:
            yield from self._index_steps(force=False)
        elif not (yield from self._indexed_steps()):
            # A dry run writes nothing, so it does not add the sessions the index lacks;
            # a prune would, as written now: they count when the cutoff is later than that.
            count = yield from self._unindexed_written_before_steps(cutoff)
        by_id, by_time = self.index_keys
        older = ("ZRANGEBYSCORE", by_time, "-inf", f"({seconds}", "LIMIT")
        if dry_run:
            offset = 0
            while ids := (yield Call((*older, offset, PRUNE_BATCH))):
                exists = yield Batch([("EXISTS", self.key(_text(member))) for member in ids])
                count += sum(1 for found in exists if found)
                if len(ids) < PRUNE_BATCH:
                    break
                offset += len(ids)
            return count
        while ids := (yield Call((*older, 0, PRUNE_BATCH))):
            if not cluster:  # each session and its entry deleted together
                deleted = yield Batch([scripts.eval_command(
                    scripts.PRUNE_SESSION, [self.key(_text(member)), by_id, by_time],
                    [member, seconds]) for member in ids])
                count += sum(1 for gone in deleted if int(gone) == 1)
            else:
                deleted = yield Batch([("DEL", self.key(_text(member))) for member in ids])
                count += sum(int(gone) for gone in deleted)
                yield Call(scripts.evalsha(scripts.UNINDEX_IF_OLD, [by_id, by_time],
                                           [seconds, *ids]))
            if len(ids) < PRUNE_BATCH:
                break
        return count

    def _unindexed_written_before_steps(self, cutoff: datetime) -> Steps[int]:
        """How many sessions the index lacks, if a backfill now would date them before cutoff."""
        if cutoff <= datetime.now(UTC):
            return 0
        ids = yield from self._scan_steps()
        if not ids:
            return 0
        known = yield Batch([("ZSCORE", self._index.by_time, member) for member in ids])
        return sum(1 for written in known if written is None)

    def _fetch_many_steps(self, session_ids: Sequence[str],
                          convert: Callable[[list[bytes | str]], list[T]]
                          ) -> Steps[dict[str, list[T]]]:
        """Each session's values in one pipeline, through ``convert`` (to records or texts)."""
        if not session_ids:
            return {}
        lists = yield Batch([("LRANGE", self.key(session_id), 0, -1)
                             for session_id in session_ids])
        return {session_id: convert(values)
                for session_id, values in zip(session_ids, lists, strict=True) if values}

    def list_sessions(self, *, after: str | None = None, limit: int = 100
                      ) -> list[SessionInfo]:
        """Up to ``limit`` sessions with messages, by id, after ``after``; writes nothing.

        Through the index: one script for the ids and their write times, one pipeline of
        ``LLEN`` for the counts. On a store whose index was never built (no ``scanned``
        marker: keys of ``RedisChatMessageHistory`` or of an older version), each page
        scans the key prefix once instead, and one pipeline reads the counts and the write
        times the index knows (``None`` for the others)."""
        return self._drive(lambda cluster: self._list_steps(after, limit))

    def last_write(self, session_id: str) -> datetime | None:
        """When ``session_id`` last had messages appended through this backend (UTC): ``None``
        for a session the index does not know (one of a store never indexed). Writes nothing."""
        return self._drive(lambda cluster: self._last_write_steps(session_id))

    def delete_sessions_before(self, cutoff: datetime, *, dry_run: bool = False) -> int:
        """Delete the sessions last written before ``cutoff``, :data:`PRUNE_BATCH` per round
        trip, each with its index entry in one script; return how many held messages."""
        return self._drive(partial(self._prune_steps, cutoff, dry_run))

    def fetch_many(self, session_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Every message of each session that has any, in one pipeline of ``LRANGE``."""
        return self._drive(lambda cluster: self._fetch_many_steps(session_ids, self._decode))

    def append_many(self, batches: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Append to many sessions in one script: all of them or none (not on a cluster,
        where each session is appended on its own node)."""
        self._append_texts(self._encoded(batches))

    def fetch_many_text(self, session_ids: Sequence[str]) -> dict[str, list[str]]:
        """:meth:`fetch_many` with each message as the JSON text Redis holds, undecoded (the
        same pipeline). A value that does not start with ``{`` is decoded to be checked: it
        raises as in :meth:`fetch`, unless it is an object with whitespace around it (given
        without). One that starts with ``{`` is not parsed."""
        return self._drive(lambda cluster: self._fetch_many_steps(session_ids, self._texts))

    def append_many_text(self, batches: Mapping[str, Sequence[str]]) -> None:
        """:meth:`append_many` of messages given as JSON texts, stored as they are given.

        Raises:
            chathistory.RecordError: a text is not a ``str`` starting with ``{``, or holds
                a lone surrogate (nothing is written).
            TypeError: a session's texts are one ``str``, not a list (nothing is written).
        """
        self._append_texts(self._checked(batches))

    def _append_texts(self, batches: dict[str, list[str]]) -> None:
        if batches:
            self._drive(partial(self._append_steps, batches))

    def reindex(self) -> int:
        """Add every session of this key prefix that the index lacks; return how many were
        found (``SCAN`` of the whole keyspace). Then drop the entries of sessions that no
        longer exist (expired, or deleted behind the backend's back), which listings skip.

        Needed only while ``RedisChatMessageHistory`` (which does not maintain the
        index) still writes new sessions beside this backend: its sessions from
        before the first use are indexed by then already.
        """
        return self._drive(lambda cluster: self._index_steps(force=True))

    async def alist_sessions(self, *, after: str | None = None, limit: int = 100
                             ) -> list[SessionInfo]:
        if self._async_in_thread:
            return await asyncio.to_thread(self.list_sessions, after=after, limit=limit)
        return await self._adrive(lambda cluster: self._list_steps(after, limit))

    async def alast_write(self, session_id: str) -> datetime | None:
        if self._async_in_thread:
            return await asyncio.to_thread(self.last_write, session_id)
        return await self._adrive(lambda cluster: self._last_write_steps(session_id))

    async def adelete_sessions_before(self, cutoff: datetime, *, dry_run: bool = False) -> int:
        if self._async_in_thread:
            return await asyncio.to_thread(self.delete_sessions_before, cutoff,
                                           dry_run=dry_run)
        return await self._adrive(partial(self._prune_steps, cutoff, dry_run))

    async def afetch_many(self, session_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        if self._async_in_thread:
            return await asyncio.to_thread(self.fetch_many, session_ids)
        return await self._adrive(lambda cluster: self._fetch_many_steps(session_ids,
                                                                         self._decode))

    async def aappend_many(self, batches: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        if self._async_in_thread:
            return await asyncio.to_thread(self.append_many, batches)
        await self._aappend_texts(self._encoded(batches))

    async def afetch_many_text(self, session_ids: Sequence[str]) -> dict[str, list[str]]:
        if self._async_in_thread:
            return await asyncio.to_thread(self.fetch_many_text, session_ids)
        return await self._adrive(lambda cluster: self._fetch_many_steps(session_ids,
                                                                         self._texts))

    async def aappend_many_text(self, batches: Mapping[str, Sequence[str]]) -> None:
        if self._async_in_thread:
            return await asyncio.to_thread(self.append_many_text, batches)
        await self._aappend_texts(self._checked(batches))

    async def _aappend_texts(self, batches: dict[str, list[str]]) -> None:
        if batches:
            await self._adrive(partial(self._append_steps, batches))

    async def areindex(self) -> int:
        """:meth:`reindex`, natively async."""
        if self._async_in_thread:
            return await asyncio.to_thread(self.reindex)
        return await self._adrive(lambda cluster: self._index_steps(force=True))

    # Records ----------------------------------------------------------------------------

    def _texts(self, values: list[bytes | str]) -> list[str]:
        """A session's values as text, oldest first, checked cheaply: one that does not start
        with ``{`` is decoded, and refused as :meth:`_decode` refuses it; the rest are not
        parsed."""
        values = list(values)
        if self._newest_first:
            values.reverse()
        try:
            texts = [_text(value) for value in values]
        except UnicodeDecodeError:
            texts = []
        if len(texts) == len(values) and all(text[:1] == "{" for text in texts):
            return texts
        return [self._text_one(position, value) for position, value in enumerate(values)]

    def _text_one(self, position: int, value: bytes | str) -> str:
        self._decode_one(position, value)  # raises unless it is a JSON object's text
        return _text(value).strip(" \t\n\r")  # JSON's whitespace: it starts with '{' now

    def _decode(self, values: list[bytes | str]) -> list[dict[str, Any]]:
        values = list(values)
        if self._newest_first:
            values.reverse()
        if not values:
            return []
        # One json.loads for the whole list is twice as fast as one per value, and
        # gives the same records when every value is a JSON object, as this backend
        # and RedisChatMessageHistory write them. If the list does not decode to
        # one object per value, each value is decoded alone, to name the bad one.
        try:
            if isinstance(values[0], bytes):
                records = json.loads(b"[" + b",".join(cast(list[bytes], values)) + b"]")
            else:
                records = json.loads("[" + ",".join(cast(list[str], values)) + "]")
        except ValueError:
            records = None
        if (isinstance(records, list) and len(records) == len(values)
                and all(type(record) is dict for record in records)):
            return records
        return [self._decode_one(position, value) for position, value in enumerate(values)]

    def _decode_one(self, position: int, value: bytes | str) -> dict[str, Any]:
        try:
            record = decode_record(value)
        except ValueError as exc:
            problem = str(exc)
        else:
            if type(record) is dict:
                return record
            problem = f"a JSON {type(record).__name__}, not an object"
        raise ChatHistoryError(
            f"backend 'redis' ({self._address}): value {position} of this session's list is "
            f"not a JSON message: {problem}"
        )


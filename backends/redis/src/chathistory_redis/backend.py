"""The redis backend: one Redis list per session, with an expiry that follows the last write.

redis-py is imported on first use, not with this module, so the options can be
validated (as the fake swap does) without the driver.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

from chathistory import BaseBackend, ChatHistoryError, decode_record, encode_record
from chathistory_redis.config import RedisConfig
from chathistory_redis.keys import chathistory_key, langchain_community_key

if TYPE_CHECKING:
    from chathistory_redis._links import AsyncLink, SyncLink

__all__ = ["RedisBackend"]


class RedisBackend(BaseBackend):
    """Chat histories in Redis: each session is one list, appended to in one round trip.

    * ``append`` is one ``RPUSH`` of the whole batch, so a batch is stored whole
      or not at all; with ``ttl`` it is ``MULTI RPUSH EXPIRE EXEC``, still one
      round trip, so every write restarts the session's expiry.
    * ``fetch(limit=n)`` is ``LRANGE key -n -1``: it reads ``n`` values however
      long the session is.
    * ``clear`` deletes the session's key and nothing else.

    The sync methods use redis-py's client, the async ones ``redis.asyncio``
    natively (one connection pool per event loop, closed when that loop shuts
    down). A lost connection is re-established on the next call. Reads and
    deletes are retried; an append is retried only when the connection failed
    before it was sent, since repeating one Redis may have run would store the
    batch twice.

    Args:
        config: The options (see :class:`~chathistory_redis.config.RedisConfig`).

    Raises (from every operation):
        chathistory.BackendUnavailableError: Redis cannot be reached.
        chathistory.PermissionDeniedError: Redis refused the credentials.
        chathistory.RecordError: a record cannot be encoded as JSON (nothing is written).
        chathistory.ChatHistoryError: Redis refused a command (say, the key holds
            another type of value).

    Example::

        backend = get_backend("redis", url="redis://localhost:6379/0", ttl=3600)
        history = ChatHistory("user-42", backend=backend)
    """

    name: ClassVar[str] = "redis"
    Config: ClassVar[type[RedisConfig]] = RedisConfig
    config: RedisConfig

    def __init__(self, config: RedisConfig | None = None) -> None:
        super().__init__(config or RedisConfig())
        config = self.config
        self._key_prefix = config.effective_key_prefix
        self._newest_first = config.layout == "langchain_community"
        self._make_key = (langchain_community_key if self._newest_first else chathistory_key)
        self._ttl = config.ttl
        self._address = config.address
        self._lock = threading.Lock()
        self._sync_link: SyncLink | None = None
        # One link per event loop, with the suspended generator that closes it
        # when the loop shuts down.
        self._loop_links: dict[asyncio.AbstractEventLoop,
                               tuple[AsyncLink, AsyncGenerator[None, None]]] = {}
        self._shared_async_link: AsyncLink | None = None
        # An application's sync client without an async one: the async twins
        # run the sync methods in a worker thread, so both reach the same server.
        self._async_in_thread = config.client is not None and config.async_client is None
        if config.client is not None or config.async_client is not None:
            from chathistory_redis import _links

            _links.check_clients(config)

    # Keys and links ---------------------------------------------------------------------

    def key(self, session_id: str) -> bytes:
        """The Redis key that holds ``session_id``'s messages."""
        return self._make_key(self._key_prefix, session_id)

    def _span(self, limit: int | None) -> tuple[int, int]:
        if limit is None:
            return 0, -1
        if limit < 0:
            raise ValueError(f"limit must be None or an int >= 0, not {limit!r}")
        return (0, limit - 1) if self._newest_first else (-limit, -1)

    def _link(self) -> SyncLink:
        link = self._sync_link
        if link is None:
            with self._lock:
                if self._sync_link is None:
                    from chathistory_redis import _links

                    self._sync_link = _links.sync_link(self.config)
                link = self._sync_link
        return link

    async def _alink(self) -> AsyncLink:
        shared = self._shared_async_link
        if shared is not None:
            return shared
        loop = asyncio.get_running_loop()
        entry = self._loop_links.get(loop)
        if entry is not None:
            return entry[0]
        return await self._new_loop_link(loop)

    async def _new_loop_link(self, loop: asyncio.AbstractEventLoop) -> AsyncLink:
        from chathistory_redis import _links

        if self.config.async_client is not None:
            self._shared_async_link = _links.async_client_link(self.config.async_client)
            return self._shared_async_link
        link = _links.async_pool_link(self.config)
        closer = self._close_with_loop(loop, link)
        with self._lock:
            for old_loop in [old for old in self._loop_links if old.is_closed()]:
                del self._loop_links[old_loop]
            self._loop_links[loop] = (link, closer)
        # Started, the generator is one the loop finalizes at shutdown
        # (asyncio.run, asyncio.Runner), which closes the pool on that loop.
        await closer.__anext__()
        return link

    async def _close_with_loop(self, loop: asyncio.AbstractEventLoop, link: AsyncLink
                               ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            with self._lock:
                entry = self._loop_links.get(loop)
                if entry is not None and entry[0] is link:
                    del self._loop_links[loop]
            await link.close()

    # Sync -------------------------------------------------------------------------------

    def create_collection(self) -> None:
        """Nothing to create: a session's list appears with its first message."""

    def append(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        values = [encode_record(record) for record in records]  # before any I/O
        if not values:
            return
        from chathistory_redis._links import call

        key, link = self.key(session_id), self._link()
        call("append", lambda: link.push(key, values, left=self._newest_first, ttl=self._ttl),
             address=self._address, idempotent=False)

    def fetch(self, session_id: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        if limit == 0:
            return []
        start, stop = self._span(limit)
        from chathistory_redis._links import call

        key, link = self.key(session_id), self._link()
        values = call("fetch", lambda: link.range(key, start, stop),
                      address=self._address, idempotent=True)
        return self._decode(values)

    def clear(self, session_id: str) -> None:
        from chathistory_redis._links import call

        key, link = self.key(session_id), self._link()
        call("clear", lambda: link.delete(key), address=self._address, idempotent=True)

    def close(self) -> None:
        """Close the connection pools this backend made. An application's clients stay open."""
        with self._lock:
            sync_link, self._sync_link = self._sync_link, None
            loop_links, self._loop_links = self._loop_links, {}
        if sync_link is not None:
            sync_link.close()
        for loop, (_, closer) in loop_links.items():
            if loop.is_running() and not loop.is_closed():
                asyncio.run_coroutine_threadsafe(_aclose_generator(closer), loop)
            # A stopped loop's pool can no longer be closed; its sockets go with it.

    # Async ------------------------------------------------------------------------------

    async def acreate_collection(self) -> None:
        """Nothing to create (and no worker thread to start for it)."""

    async def aappend(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        if self._async_in_thread:
            return await super().aappend(session_id, records)
        values = [encode_record(record) for record in records]  # before any I/O
        if not values:
            return
        from chathistory_redis._links import acall

        key, link = self.key(session_id), await self._alink()
        await acall("append",
                    lambda: link.push(key, values, left=self._newest_first, ttl=self._ttl),
                    address=self._address, idempotent=False)

    async def afetch(self, session_id: str, *, limit: int | None = None
                     ) -> list[dict[str, Any]]:
        if self._async_in_thread:
            return await super().afetch(session_id, limit=limit)
        if limit == 0:
            return []
        start, stop = self._span(limit)
        from chathistory_redis._links import acall

        key, link = self.key(session_id), await self._alink()
        values = await acall("fetch", lambda: link.range(key, start, stop),
                             address=self._address, idempotent=True)
        return self._decode(values)

    async def aclear(self, session_id: str) -> None:
        if self._async_in_thread:
            return await super().aclear(session_id)
        from chathistory_redis._links import acall

        key, link = self.key(session_id), await self._alink()
        await acall("clear", lambda: link.delete(key), address=self._address, idempotent=True)

    async def aclose(self) -> None:
        """Close this event loop's pool at once, and the others as :meth:`close` does."""
        try:
            loop = asyncio.get_running_loop()
            with self._lock:
                entry = self._loop_links.pop(loop, None)
            if entry is not None:
                await _aclose_generator(entry[1])
        finally:
            self.close()

    # Records ----------------------------------------------------------------------------

    def _decode(self, values: list[bytes | str]) -> list[dict[str, Any]]:
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


async def _aclose_generator(generator: AsyncGenerator[None, None]) -> None:
    await generator.aclose()

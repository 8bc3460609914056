"""The redis backend: one Redis list per session, with an expiry that follows the last write.

redis-py is imported when a backend is built, not with this module, so the
options can be validated (as the fake swap does) without the driver.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, cast

from chathistory import (
    BaseBackend,
    ChatHistoryError,
    aretry_transient,
    decode_record,
    encode_record,
    retry_transient,
)
from chathistory_redis.config import RedisConfig
from chathistory_redis.keys import chathistory_key, langchain_community_key

if TYPE_CHECKING:
    from chathistory_redis.client import Command

__all__ = ["PUSH_AND_EXPIRE", "RedisBackend"]

# An append with ``ttl``: the push and its expiry in one command, so they run together
# (a script is atomic), in one round trip, on a single server or a cluster alike.
# ARGV is the push command, the ttl, then the values, pushed 1000 at a time as
# unpack() takes only a few thousand.
PUSH_AND_EXPIRE = """
for first = 3, #ARGV, 1000 do
  redis.call(ARGV[1], KEYS[1], unpack(ARGV, first, math.min(first + 999, #ARGV)))
end
return redis.call('EXPIRE', KEYS[1], ARGV[2])
"""


class RedisBackend(BaseBackend):
    """Chat histories in Redis: each session is one list, appended to in one round trip.

    * ``append`` is one ``RPUSH`` of the whole batch, so a batch is stored whole
      or not at all; with ``ttl`` it is one script that pushes and sets the
      expiry, so every write restarts the session's expiry.
    * ``fetch(limit=n)`` is ``LRANGE key -n -1``: it reads ``n`` values however
      long the session is.
    * ``clear`` deletes the session's key and nothing else.

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
        from chathistory_redis import errors
        from chathistory_redis.client import Clients

        self._clients = Clients(config)  # ConfigError for an app client of the wrong kind
        self._is_transient = errors.is_transient
        self._translate = partial(errors.translate, address=config.address)
        self._key_prefix = config.effective_key_prefix
        self._newest_first = config.layout == "langchain_community"
        self._make_key = langchain_community_key if self._newest_first else chathistory_key
        self._push = "LPUSH" if self._newest_first else "RPUSH"
        self._ttl = config.ttl
        self._address = config.address
        # An application's sync client without an async one: the async twins run
        # the sync methods in a worker thread, so both reach the same server.
        self._async_in_thread = config.client is not None and config.async_client is None

    def key(self, session_id: str) -> bytes:
        """The Redis key that holds ``session_id``'s messages."""
        return self._make_key(self._key_prefix, session_id)

    # Commands ---------------------------------------------------------------------------

    def _append_command(self, session_id: str, records: Sequence[Mapping[str, Any]]
                        ) -> Command | None:
        values = [encode_record(record) for record in records]  # before any I/O
        if not values:
            return None
        if self._ttl is None:
            return (self._push, self.key(session_id), *values)
        return ("EVAL", PUSH_AND_EXPIRE, 1, self.key(session_id), self._push, self._ttl, *values)

    def _fetch_command(self, session_id: str, limit: int | None) -> Command:
        if limit is None:
            return ("LRANGE", self.key(session_id), 0, -1)
        if limit < 0:
            raise ValueError(f"limit must be None or an int >= 0, not {limit!r}")
        if self._newest_first:
            return ("LRANGE", self.key(session_id), 0, limit - 1)
        return ("LRANGE", self.key(session_id), -limit, -1)

    def _run(self, command: Command, *, write: bool = False) -> Any:
        commands = self._clients.sync
        return retry_transient(lambda: commands.run(command, write=write), backend=self.name,
                               is_transient=self._is_transient, translate=self._translate)

    async def _arun(self, command: Command, *, write: bool = False) -> Any:
        commands = await self._clients.for_running_loop()
        return await aretry_transient(lambda: commands.run(command, write=write),
                                      backend=self.name, is_transient=self._is_transient,
                                      translate=self._translate)

    # Sync -------------------------------------------------------------------------------

    def create_collection(self) -> None:
        """Nothing to create: a session's list appears with its first message."""

    def append(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        command = self._append_command(session_id, records)
        if command is not None:
            self._run(command, write=True)

    def fetch(self, session_id: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        command = self._fetch_command(session_id, limit)
        return [] if limit == 0 else self._decode(self._run(command))

    def clear(self, session_id: str) -> None:
        self._run(("DEL", self.key(session_id)))

    def close(self) -> None:
        """Close the connection pools this backend made. An application's clients stay open."""
        self._clients.close()

    # Async ------------------------------------------------------------------------------

    async def acreate_collection(self) -> None:
        """Nothing to create (and no worker thread to start for it)."""

    async def aappend(self, session_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        if self._async_in_thread:
            return await super().aappend(session_id, records)
        command = self._append_command(session_id, records)
        if command is not None:
            await self._arun(command, write=True)

    async def afetch(self, session_id: str, *, limit: int | None = None
                     ) -> list[dict[str, Any]]:
        if self._async_in_thread:
            return await super().afetch(session_id, limit=limit)
        command = self._fetch_command(session_id, limit)
        return [] if limit == 0 else self._decode(await self._arun(command))

    async def aclear(self, session_id: str) -> None:
        if self._async_in_thread:
            return await super().aclear(session_id)
        await self._arun(("DEL", self.key(session_id)))

    async def aclose(self) -> None:
        """Close this event loop's pool at once, and the others as :meth:`close` does."""
        await self._clients.aclose()

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


"""The keyspace: where a session lives in each layout, the sessions index, and the Lua scripts.

``chathistory`` layout: ``<key_prefix>:{<session>}`` (``myapp:`` gets no second
``:``), the session id with ``%``, ``{`` and ``}`` percent-encoded, so that the
Redis Cluster hash tag (what lies between the first ``{`` and the next ``}``) is
exactly the whole session id, and distinct ids give distinct keys.
``langchain_community`` layout: ``<key_prefix><session>``, byte for byte what
``RedisChatMessageHistory`` uses (``message_store:user-42``). Keys are UTF-8; a
lone surrogate in an id is kept (``surrogatepass``).

The sessions index (:func:`index_keys`), in one hash slot of its own: ``by-id``
(every id, score 0, paged in id order with ``ZRANGEBYLEX``), ``by-time`` (score:
the last write, in seconds), and ``scanned``, set once the keys written before the
index existed (or by the peer class) were added. They never look like a
session's key (``<key_prefix>:sessions:{...}``, or ``chathistory-index:{...}``
in the langchain_community layout, where any key under the prefix is a session's).

The scripts are sent with ``EVALSHA`` (``EVAL`` when the server has not cached
them), each atomic and one round trip, with the server's clock (``TIME``) for
write times. A Redis Cluster runs a script only over keys of one hash slot, so
there the index and each session are updated apart: :data:`INDEX`, then
:data:`PUSH`; on one server, :data:`APPEND` does both.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

__all__ = [
    "APPEND", "BODIES", "CATALOG_PAGE", "ERASE", "ERASE_ENTRIES",
    "ERASE_MESSAGES", "INDEX", "LIST_PAGE", "PUSH", "RESTORE", "SUMMARIES",
    "UNINDEX_IF_UNCHANGED", "UPDATE", "Command", "Erasure", "IndexKeys", "Once", "Pipeline",
    "Scan", "Script",
    "chathistory_key", "evalsha", "index_keys", "key_prefix_problem",
    "langchain_community_key", "scan_pattern", "session_from_chathistory_key",
    "session_ids_of_keys", "text", "utf8",
]

Command = tuple[bytes | str | int, ...]
"""A Redis command and its arguments."""


class Once(tuple[bytes | str | int, ...]):
    """A write command that must not run twice: if its reply is lost, ``ReplyLostError``,
    saying what was then :attr:`lost`."""

    __slots__ = ()
    lost: ClassVar[str] = ("the append was sent, so it was not repeated; Redis stored the "
                           "whole batch or none of it")


class Erasure(Once):
    """A :class:`Once` that deletes and counts what it deleted (run again, it would count 0)."""

    __slots__ = ()
    lost = ("a deletion was sent, so it was not repeated (it would count nothing the second "
            "time): what it deleted is not counted; the same erase or prune run again "
            "finishes it")


class Pipeline(list[Command]):
    """Commands that may be repeated, sent together: their replies in order, or the first
    error reply once all are read. A cluster routes each to its node."""


class Scan(bytes):
    """A pattern: every list key matching it (``SCAN ... TYPE list``, on every node)."""

    __slots__ = ()


def utf8(value: bytes | str) -> bytes:
    """``value`` as bytes: a key, or an id as the index holds it (lone surrogates kept)."""
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")


def text(value: bytes | str) -> str:
    """:func:`utf8` undone."""
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else value


def chathistory_base(key_prefix: str) -> str:
    """``key_prefix`` followed by one ``:`` (none added if it already ends with one)."""
    return key_prefix if key_prefix.endswith(":") else f"{key_prefix}:"


def chathistory_key(key_prefix: str, session_id: str) -> bytes:
    """The key of ``session_id`` in the ``chathistory`` layout."""
    tag = session_id.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return utf8(f"{chathistory_base(key_prefix)}{{{tag}}}")


def langchain_community_key(key_prefix: str, session_id: str) -> bytes:
    """The key of ``session_id`` in the ``langchain_community`` layout."""
    return utf8(key_prefix + session_id)


def session_from_chathistory_key(key_prefix: str, key: bytes) -> str:
    """The session id a ``chathistory``-layout key belongs to (for tools that scan keys)."""
    found = session_ids_of_keys("chathistory", key_prefix, [key])
    if not found:
        raise ValueError("not a key of this key prefix")
    return text(found.pop())


def session_ids_of_keys(layout: str, key_prefix: str, keys: Iterable[bytes]) -> set[bytes]:
    """The ids (UTF-8, as the sessions index holds them) of the sessions ``keys`` belong to.

    On bytes, so a scan of 10,000 keys costs a few milliseconds. A key that is no
    session's key of ``layout`` and ``key_prefix``, or whose id is not UTF-8, is left out.
    """
    if layout == "chathistory":
        head = utf8(f"{chathistory_base(key_prefix)}{{")
        tags = [key[len(head):-1] for key in keys if key.startswith(head) and key.endswith(b"}")]
        joined = b"\n".join(tags)  # each test below done once for all, where it can be
        if b"{" in joined or b"}" in joined:
            tags = [tag for tag in tags if b"{" not in tag and b"}" not in tag]
        if b"%" in joined:
            tags = [tag.replace(b"%7D", b"}").replace(b"%7B", b"{").replace(b"%25", b"%")
                    for tag in tags]
    else:
        head = utf8(key_prefix)
        tags = [key[len(head):] for key in keys if key.startswith(head)]
        joined = b"\n".join(tags)
    try:  # pieces of UTF-8 joined by a newline are UTF-8, and only they are
        text(joined)
    except UnicodeDecodeError:
        return {tag for tag in tags if _is_text(tag)}
    return set(tags)


def _is_text(raw: bytes) -> bool:
    try:
        text(raw)
    except UnicodeDecodeError:
        return False
    return True


@dataclass(frozen=True)
class IndexKeys:
    """The sessions index and the catalog of one layout and key prefix, all in one hash slot.

    ``owned`` is no key but the start of one: ``owned + owner`` is that owner's sorted
    set of sessions (score: the last write), in the same slot (its hash tag comes first).
    """

    by_id: bytes
    by_time: bytes
    scanned: bytes
    owners: bytes = b""
    titles: bytes = b""
    metadata: bytes = b""
    created: bytes = b""
    kept: bytes = b""
    owned: bytes = b""

    @property
    def catalog(self) -> list[bytes]:
        """The keys every catalog script takes first, in the order they name them."""
        return [self.by_id, self.by_time, self.owners, self.titles, self.metadata,
                self.created, self.kept]


def index_keys(layout: str, key_prefix: str) -> IndexKeys:
    """The index keys: ``<prefix>:sessions:{<prefix>:}:by-id`` (chathistory layout) or
    ``chathistory-index:{<key_prefix>}:by-id``; likewise ``:by-time`` and ``:scanned``."""
    if layout == "chathistory":
        base = chathistory_base(key_prefix)
        head = f"{base}sessions:{{{base}}}"
    else:
        head = f"chathistory-index:{{{key_prefix}}}"
    return IndexKeys(*(utf8(f"{head}:{name}") for name in (
        "by-id", "by-time", "scanned", "owners", "titles", "metadata", "created", "kept",
        "by-owner:")))


def scan_pattern(layout: str, key_prefix: str) -> bytes:
    """A ``SCAN MATCH`` pattern for the sessions' keys (the prefix's glob characters escaped)."""
    base = chathistory_base(key_prefix) if layout == "chathistory" else key_prefix
    escaped = re.sub(r"([*?\[\]\\])", r"\\\1", base)
    return utf8(escaped + ("{*}" if layout == "chathistory" else "*"))


def key_prefix_problem(layout: str, key_prefix: str) -> str | None:
    """Why ``key_prefix`` would break the keys of ``layout``, or ``None`` when it would not."""
    if layout == "chathistory":
        if "{" in key_prefix or "}" in key_prefix:
            return ("must not contain '{' or '}': Redis Cluster hashes what lies between a "
                    "key's first '{' and the next '}', which must be the session id, so that "
                    "each session stays whole on one node")
        return None
    if key_prefix == "":
        return ("must not be empty: every key in the database would then be a session's key, "
                "the sessions index's own included")
    for key in vars(index_keys(layout, key_prefix)).values():
        if key.startswith(utf8(key_prefix)):
            return (f"is the start of the sessions index's key {text(key)!r}, which would "
                    "then also be the key of a session; choose another prefix")
    return None


# Scripts ------------------------------------------------------------------------------

BODIES: dict[str, str] = {}
"""Each script's body by its SHA1, for the ``EVAL`` sent when ``EVALSHA`` finds none cached."""


@dataclass(frozen=True)
class Script:
    """A Lua script and its SHA1 (what ``EVALSHA`` names it by), listed in :data:`BODIES`."""

    body: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.body.encode()).hexdigest())
        BODIES[self.sha] = self.body


# The server's time in seconds, with microseconds, as a string (a Lua number would be
# formatted with 14 digits: 0.1 ms).
_NOW = """
local clock = redis.call('TIME')
local now = clock[1] .. '.' .. string.format('%06d', clock[2])
"""

# Every catalog script takes the index's keys first (KEYS[1..7], IndexKeys.catalog) and
# the start of the owners' keys as ARGV[1]: an owner's sorted set is OWNED .. owner, a key
# the script names itself (it is in the same slot: the hash tag comes before the owner).
_CATALOG = """
local BY_ID, BY_TIME, OWNERS, TITLES, METADATA, CREATED, KEPT =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local OWNED = ARGV[1]
-- A write at `at`: the session's time in the index and in its owner's set, created once.
local function touch(id, at, flag)
  redis.call('ZADD', BY_TIME, flag, at, id)
  redis.call('ZADD', BY_ID, 0, id)
  redis.call('HSETNX', CREATED, id, at)
  local owner = redis.call('HGET', OWNERS, id)
  if owner then redis.call('ZADD', OWNED .. owner, flag, at, id) end
end
-- `command key` (none if key is false) with the values of list, 1000 at a time: unpack()
-- takes a few thousand values at most.
local function each(command, key, list)
  for at = 1, #list, 1000 do
    local to = math.min(at + 999, #list)
    if key then redis.call(command, key, unpack(list, at, to))
    else redis.call(command, unpack(list, at, to)) end
  end
end
-- The field of each of `ids` in the hash `key` ('' where none), 1000 a call.
local function hmget(key, ids)
  local values = {}
  for at = 1, #ids, 1000 do
    local found = redis.call('HMGET', key, unpack(ids, at, math.min(at + 999, #ids)))
    for j, value in ipairs(found) do values[at + j - 1] = value or '' end
  end
  return values
end
-- The entries of `ids` gone: one variadic call a structure for all of them, not one a
-- session (each call on a structure of a million entries costs its cache misses apart).
local function forget(ids)
  if #ids == 0 then return end
  local owned, owners = {}, {}
  for i, owner in ipairs(hmget(OWNERS, ids)) do
    if owner ~= '' then
      if not owned[owner] then owned[owner], owners[#owners + 1] = {}, owner end
      table.insert(owned[owner], ids[i])
    end
  end
  for _, owner in ipairs(owners) do each('ZREM', OWNED .. owner, owned[owner]) end
  for _, key in ipairs({BY_ID, BY_TIME}) do each('ZREM', key, ids) end
  for _, key in ipairs({OWNERS, TITLES, METADATA, CREATED}) do each('HDEL', key, ids) end
  each('SREM', KEPT, ids)
end
local function set_or_delete(key, id, value)
  if value == '' then redis.call('HDEL', key, id) else redis.call('HSET', key, id, value) end
end
-- What a listing shows of each session: '' where a field is not set.
local function describe(ids, times)
  local kept = {}
  for i, id in ipairs(ids) do kept[i] = redis.call('SISMEMBER', KEPT, id) end
  return {ids, times, hmget(OWNERS, ids), hmget(TITLES, ids), hmget(METADATA, ids),
          hmget(CREATED, ids), kept}
end
"""

# With a ttl, drop from the index up to 10 sessions last written more than ttl ago: they
# have expired, and an index of a ttl'd store does not grow without end. Sessions kept in
# the catalog (described or restored) stay until erased or pruned; the ten are taken from
# a place in the old range that moves with the clock, so kept ones do not block the rest.
_FORGET_EXPIRED = """
local function forget_expired(ttl)
  if ttl == '0' then return end
  local seconds = tonumber(clock[1]) - tonumber(ttl)
  local bound = '(' .. seconds .. '.' .. string.format('%06d', clock[2])
  local old = redis.call('ZCOUNT', BY_TIME, '-inf', bound)
  if old == 0 then return end
  local from = tonumber(clock[2]) % math.max(old - 9, 1)
  local gone = {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', BY_TIME, '-inf', bound, 'LIMIT', from, 10)) do
    if redis.call('SISMEMBER', KEPT, id) == 0 then gone[#gone + 1] = id end
  end
  forget(gone)
end
"""

# KEYS: the catalog's, then each session's key.
# ARGV: owned, push command, ttl ('0': none), then each session's id, then each session's
# number of values, then all the values, session after session.
# Every session key is checked first (a key of another type fails the whole call
# before anything is written), so all sessions are appended or none.
APPEND = Script(_NOW + _CATALOG + _FORGET_EXPIRED + """
local push, ttl = ARGV[2], ARGV[3]
local sessions = #KEYS - 7
for i = 8, #KEYS do
  local kind = redis.call('TYPE', KEYS[i])['ok']
  if kind ~= 'none' and kind ~= 'list' then
    return redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of value')
  end
end
forget_expired(ttl)
local at = 4 + 2 * sessions
for i = 1, sessions do
  local key, id = KEYS[7 + i], ARGV[3 + i]
  local last = at + tonumber(ARGV[3 + sessions + i]) - 1
  for first = at, last, 1000 do  -- unpack() takes a few thousand values at most
    redis.call(push, key, unpack(ARGV, first, math.min(first + 999, last)))
  end
  at = last + 1
  if ttl ~= '0' then redis.call('EXPIRE', key, ttl) end
  touch(id, now, 'CH')
end
return sessions
""")

# Cluster, the session's slot. KEYS: the session's key. ARGV: push command, ttl, values.
PUSH = Script("""
for first = 3, #ARGV, 1000 do
  redis.call(ARGV[1], KEYS[1], unpack(ARGV, first, math.min(first + 999, #ARGV)))
end
if ARGV[2] ~= '0' then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 1
""")

# The index's slot. KEYS: the catalog's. ARGV: owned, 'NX' (keep the times already known:
# a backfill) or 'CH' (the sessions are written now), ttl ('0': none), then session ids.
INDEX = Script(_NOW + _CATALOG + _FORGET_EXPIRED + """
forget_expired(ARGV[3])
for i = 4, #ARGV do touch(ARGV[i], now, ARGV[2]) end
return #ARGV - 3
""")

# The index's slot. KEYS: by-id, by-time. ARGV: the lowest id ('-' or '(' .. after), the
# most ids. Returns the ids in order and their times ('' where none).
LIST_PAGE = Script("""
local ids = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+', 'LIMIT', 0, ARGV[2])
local times = {}
for i = 1, #ids do
  times[i] = redis.call('ZSCORE', KEYS[2], ids[i]) or ''
end
return {ids, times}
""")

# The index's slot. KEYS: the catalog's. ARGV: owned, then pairs of session id and the
# time read with it ('' for none). Drops each session whose time is still that one (nobody
# wrote since it was found to be gone) and that the catalog does not keep.
UNINDEX_IF_UNCHANGED = Script(_CATALOG + """
local gone = {}
for i = 2, #ARGV, 2 do
  local time = redis.call('ZSCORE', BY_TIME, ARGV[i]) or ''
  if time == ARGV[i + 1] and redis.call('SISMEMBER', KEPT, ARGV[i]) == 0 then
    gone[#gone + 1] = ARGV[i]
  end
end
forget(gone)
""")

# Byte order, which is how Redis orders the members of equal score (Lua's own `<` follows
# the server's locale).
_BEFORE = """
local function before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = a:byte(i), b:byte(i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
"""

# The index's slot. KEYS: the catalog's. ARGV: owned, owner ('' for every session), 'asc'
# or 'desc', how many, and the cursor: the time and id of the last session listed ('' and
# '' for none). Ranks in the owner's (or the index's) sorted set by (time, id): the
# cursor's own rank when its session still has that time, else counted from the time's
# ties. Returns what `describe` does.
CATALOG_PAGE = Script(_CATALOG + _BEFORE + """
local key = BY_TIME
if ARGV[2] ~= '' then key = OWNED .. ARGV[2] end
local desc = ARGV[3] == 'desc'
local start = 0
if ARGV[5] ~= '' then
  local at, id = ARGV[5], ARGV[6]
  local time = redis.call('ZSCORE', key, id)
  if time and tonumber(time) == tonumber(at) then
    if desc then start = redis.call('ZREVRANK', key, id) + 1
    else start = redis.call('ZRANK', key, id) + 1 end
  else
    if desc then start = redis.call('ZCOUNT', key, '(' .. at, '+inf')
    else start = redis.call('ZCOUNT', key, '-inf', '(' .. at) end
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', key, at, at)) do
      if before(id, member) == desc then start = start + 1 end
    end
  end
end
local range = redis.call(desc and 'ZREVRANGE' or 'ZRANGE', key, start,
                         start + tonumber(ARGV[4]) - 1, 'WITHSCORES')
local ids, times = {}, {}
for i = 1, #range, 2 do
  ids[#ids + 1] = range[i]
  times[#times + 1] = range[i + 1]
end
return describe(ids, times)
""")

# The index's slot. KEYS: the catalog's. ARGV: owned, session ids. What `describe` returns,
# with '' for the time of a session the catalog does not know.
SUMMARIES = Script(_CATALOG + """
local ids, times = {}, {}
for i = 2, #ARGV do
  ids[i - 1] = ARGV[i]
  times[i - 1] = redis.call('ZSCORE', BY_TIME, ARGV[i]) or ''
end
return describe(ids, times)
""")

# The index's slot. KEYS: the catalog's. ARGV: owned, session id, owner action ('keep' or
# 'set'), owner ('' for none), title action, title, metadata action ('keep', 'set', or
# 'merged': set if what it was merged from is still stored), the metadata's text ('' for
# none), the text it was merged from, '1' to set an owner or title only where none is.
# Returns 0, writing nothing, when the metadata changed since it was read (the caller
# merges again), else 1. A session the catalog does not know gets an entry created now;
# no time moves.
UPDATE = Script(_NOW + _CATALOG + """
local id = ARGV[2]
if ARGV[7] == 'merged' and (redis.call('HGET', METADATA, id) or '') ~= ARGV[9] then
  return 0
end
if not redis.call('ZSCORE', BY_TIME, id) then touch(id, now, 'CH') end
redis.call('SADD', KEPT, id)
local only_if_unset = ARGV[10] == '1'
local old = redis.call('HGET', OWNERS, id)
if ARGV[3] ~= 'keep' and not (only_if_unset and old) then
  if old then redis.call('ZREM', OWNED .. old, id) end
  set_or_delete(OWNERS, id, ARGV[4])
  if ARGV[4] ~= '' then
    redis.call('ZADD', OWNED .. ARGV[4], redis.call('ZSCORE', BY_TIME, id), id)
  end
end
if ARGV[5] ~= 'keep' and not (only_if_unset and redis.call('HEXISTS', TITLES, id) == 1) then
  set_or_delete(TITLES, id, ARGV[6])
end
if ARGV[7] ~= 'keep' then set_or_delete(METADATA, id, ARGV[8]) end
return 1
""")

# The index's slot. KEYS: the catalog's. ARGV: owned, then for each session its id,
# created, updated (seconds), owner, title, metadata ('' for none). Each entry is set whole.
RESTORE = Script(_CATALOG + """
for i = 2, #ARGV, 6 do
  local id, updated, owner = ARGV[i], ARGV[i + 2], ARGV[i + 3]
  local old = redis.call('HGET', OWNERS, id)
  if old then redis.call('ZREM', OWNED .. old, id) end
  redis.call('ZADD', BY_TIME, updated, id)
  redis.call('ZADD', BY_ID, 0, id)
  redis.call('HSET', CREATED, id, ARGV[i + 1])
  redis.call('SADD', KEPT, id)
  set_or_delete(OWNERS, id, owner)
  if owner ~= '' then redis.call('ZADD', OWNED .. owner, updated, id) end
  set_or_delete(TITLES, id, ARGV[i + 4])
  set_or_delete(METADATA, id, ARGV[i + 5])
end
return 1
""")

# The deletions: ERASE on one server; on a cluster ERASE_MESSAGES in each session's slot,
# then ERASE_ENTRIES. ARGV: owned, '1' for a dry run, a cutoff (seconds; '' for none), then
# the session ids. With a cutoff, only the sessions last written before it are deleted.
_CHOSEN = """
local function chosen()
  local ids, keys = {}, {}
  for i = 4, #ARGV do
    local time = ARGV[3] ~= '' and redis.call('ZSCORE', BY_TIME, ARGV[i])
    if ARGV[3] == '' or (time and tonumber(time) < tonumber(ARGV[3])) then
      ids[#ids + 1] = ARGV[i]
      keys[#ids] = KEYS[4 + i]
    end
  end
  return ids, keys
end
"""

# One server. KEYS: the catalog's, then each session's key. Every list is measured before
# anything is deleted (a key of another type fails the call first). Returns the sessions
# (with messages, or kept in the catalog) and the messages deleted, and how many of the
# sessions held messages.
ERASE = Script(_CATALOG + _CHOSEN + """
local ids, keys = chosen()
local sessions, messages, held, counts = 0, 0, 0, {}
for i, key in ipairs(keys) do counts[i] = redis.call('LLEN', key) end
for i, id in ipairs(ids) do
  if counts[i] > 0 then held = held + 1 end
  if counts[i] > 0 or redis.call('SISMEMBER', KEPT, id) == 1 then
    sessions, messages = sessions + 1, messages + counts[i]
  end
end
if ARGV[2] ~= '1' then
  each('DEL', false, keys)
  forget(ids)
end
return {sessions, messages, held}
""")

# Cluster, the session's slot. KEYS: the session's key. ARGV: '1' for a dry run. Returns
# how many messages it held (and deletes them).
ERASE_MESSAGES = Script("""
local count = redis.call('LLEN', KEYS[1])
if ARGV[1] ~= '1' then redis.call('DEL', KEYS[1]) end
return count
""")

# Cluster, the index's slot, after ERASE_MESSAGES or a clear's DEL. KEYS: the catalog's.
# Returns whether the catalog kept each session (and forgets the chosen ones).
ERASE_ENTRIES = Script(_CATALOG + _CHOSEN + """
local kept = {}
for i = 4, #ARGV do kept[i - 3] = redis.call('SISMEMBER', KEPT, ARGV[i]) end
if ARGV[2] ~= '1' then forget((chosen())) end
return kept
""")

def evalsha(script: Script, keys: Sequence[bytes], args: Sequence[bytes | str | int], *,
            body: bool = False) -> Command:
    """The ``EVALSHA`` command that runs ``script`` on ``keys`` with ``args``; with ``body``,
    the ``EVAL`` that sends the body along: for pipelines, where a missing script could not
    be sent again for the commands it failed alone."""
    return ("EVAL", script.body, len(keys), *keys, *args) if body else (
        "EVALSHA", script.sha, len(keys), *keys, *args)

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

__all__ = [
    "APPEND", "BODIES", "DELETE_SESSION", "INDEX", "LIST_PAGE", "PUSH",
    "UNINDEX_IF_OLD", "UNINDEX_IF_UNCHANGED", "Command", "IndexKeys", "Script",
    "chathistory_key", "eval_command", "evalsha", "index_keys", "key_prefix_problem",
    "langchain_community_key", "scan_pattern", "session_from_chathistory_key",
    "session_ids_of_keys", "text", "utf8",
]

Command = tuple[bytes | str | int, ...]
"""A Redis command and its arguments."""

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
    head = utf8(f"{chathistory_base(key_prefix)}{{")
    tag = key[len(head):-1]
    if not (key.startswith(head) and key.endswith(b"}")) or b"{" in tag or b"}" in tag:
        raise ValueError("not a key of this key prefix")
    return text(tag).replace("%7D", "}").replace("%7B", "{").replace("%25", "%")


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
    """The sessions index of one layout and key prefix (all three in one hash slot)."""

    by_id: bytes
    by_time: bytes
    scanned: bytes


def index_keys(layout: str, key_prefix: str) -> IndexKeys:
    """The index keys: ``<prefix>:sessions:{<prefix>:}:by-id`` (chathistory layout) or
    ``chathistory-index:{<key_prefix>}:by-id``; likewise ``:by-time`` and ``:scanned``."""
    if layout == "chathistory":
        base = chathistory_base(key_prefix)
        head = f"{base}sessions:{{{base}}}"
    else:
        head = f"chathistory-index:{{{key_prefix}}}"
    return IndexKeys(utf8(f"{head}:by-id"), utf8(f"{head}:by-time"),
                     utf8(f"{head}:scanned"))


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

@dataclass(frozen=True)
class Script:
    """A Lua script and its SHA1 (what ``EVALSHA`` names it by)."""

    body: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.body.encode()).hexdigest())


# The server's time in seconds, with microseconds, as a string (a Lua number would be
# formatted with 14 digits: 0.1 ms).
_NOW = """
local clock = redis.call('TIME')
local now = clock[1] .. '.' .. string.format('%06d', clock[2])
"""

# With a ttl, drop from the index up to 10 sessions last written more than ttl ago:
# they have expired, and an index of a ttl'd store does not grow without end.
_FORGET_EXPIRED = """
local function forget_expired(by_id, by_time, ttl)
  if ttl == '0' then return end
  local seconds = tonumber(clock[1]) - tonumber(ttl)
  local bound = '(' .. seconds .. '.' .. string.format('%06d', clock[2])
  local old = redis.call('ZRANGEBYSCORE', by_time, '-inf', bound, 'LIMIT', 0, 10)
  if #old > 0 then
    redis.call('ZREM', by_time, unpack(old))
    redis.call('ZREM', by_id, unpack(old))
  end
end
"""

# KEYS: by-id, by-time, then each session's key.
# ARGV: push command, ttl ('0': none), then each session's id, then each session's
# number of values, then all the values, session after session.
# Every session key is checked first (a key of another type fails the whole call
# before anything is written), so all sessions are appended or none.
APPEND = Script(_NOW + _FORGET_EXPIRED + """
local push, ttl = ARGV[1], ARGV[2]
local sessions = #KEYS - 2
for i = 3, #KEYS do
  local kind = redis.call('TYPE', KEYS[i])['ok']
  if kind ~= 'none' and kind ~= 'list' then
    return redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of value')
  end
end
forget_expired(KEYS[1], KEYS[2], ttl)
local at = 3 + 2 * sessions
for i = 1, sessions do
  local key, id = KEYS[2 + i], ARGV[2 + i]
  local last = at + tonumber(ARGV[2 + sessions + i]) - 1
  for first = at, last, 1000 do  -- unpack() takes a few thousand values at most
    redis.call(push, key, unpack(ARGV, first, math.min(first + 999, last)))
  end
  at = last + 1
  if ttl ~= '0' then redis.call('EXPIRE', key, ttl) end
  redis.call('ZADD', KEYS[2], now, id)
  redis.call('ZADD', KEYS[1], 0, id)
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

# The index's slot. KEYS: by-id, by-time. ARGV: 'NX' (keep the times already known: a
# backfill) or 'CH' (the sessions are written now), ttl ('0': none), then session ids.
INDEX = Script(_NOW + _FORGET_EXPIRED + """
forget_expired(KEYS[1], KEYS[2], ARGV[2])
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[2], ARGV[1], now, ARGV[i])
  redis.call('ZADD', KEYS[1], 0, ARGV[i])
end
return #ARGV - 2
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

# The index's slot. KEYS: by-id, by-time. ARGV: pairs of session id and the time read
# with it ('' for none). Drops each session whose time is still that one, i.e. that
# nobody wrote since it was found to be gone.
UNINDEX_IF_UNCHANGED = Script("""
local dropped = 0
for i = 1, #ARGV, 2 do
  local time = redis.call('ZSCORE', KEYS[2], ARGV[i]) or ''
  if time == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
    dropped = dropped + 1
  end
end
return dropped
""")

# KEYS: session key, by-id, by-time. ARGV: session id, and a cutoff (seconds) or '' (none).
# Deletes the session and its entry (with a cutoff, only if last written before it): 1 if
# it held messages, 0 if not, -1 if it was written since the cutoff (nothing done).
DELETE_SESSION = Script("""
if ARGV[2] ~= '' then
  local time = redis.call('ZSCORE', KEYS[3], ARGV[1])
  if not time or tonumber(time) >= tonumber(ARGV[2]) then return -1 end
end
local gone = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return gone
""")

# Cluster, the index's slot. KEYS: by-id, by-time. ARGV: cutoff, session ids. Drops
# the entries of those sessions still last written before the cutoff.
UNINDEX_IF_OLD = Script("""
local dropped = 0
for i = 2, #ARGV do
  local time = redis.call('ZSCORE', KEYS[2], ARGV[i])
  if time and tonumber(time) < tonumber(ARGV[1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
    dropped = dropped + 1
  end
end
return dropped
""")

BODIES = {script.sha: script.body for script in (
    APPEND, PUSH, INDEX, DELETE_SESSION, LIST_PAGE, UNINDEX_IF_UNCHANGED, UNINDEX_IF_OLD)}
"""Each script's body by its SHA1, for the ``EVAL`` sent when ``EVALSHA`` finds none cached."""


def evalsha(script: Script, keys: Sequence[bytes], args: Sequence[bytes | str | int]
            ) -> Command:
    """The ``EVALSHA`` command that runs ``script`` on ``keys`` with ``args``."""
    return ("EVALSHA", script.sha, len(keys), *keys, *args)


def eval_command(script: Script, keys: Sequence[bytes], args: Sequence[bytes | str | int]
                 ) -> Command:
    """The ``EVAL`` command (the body sent along): for pipelines, where a missing script
    could not be sent again for the commands it failed alone."""
    return ("EVAL", script.body, len(keys), *keys, *args)

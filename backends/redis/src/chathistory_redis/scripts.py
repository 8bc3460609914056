"""The Lua scripts the backend runs: each is atomic in Redis and one round trip.

They are sent with ``EVALSHA`` (``EVAL`` once, when the server does not have
them cached yet). Times are the server's own clock (``TIME``), in seconds with
microseconds, so every application server writes the same clock into the index.

On a single server, :data:`APPEND` writes the sessions' messages and the
index together. A Redis Cluster cannot run a script over keys of several hash
slots, so there the index (one slot of its own) and each session (its own
slot) are updated by separate scripts: :data:`INDEX` first, then :data:`PUSH`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "ALL",
    "APPEND",
    "BODIES",
    "CLEAR",
    "INDEX",
    "LIST_PAGE",
    "PRUNE_SESSION",
    "PUSH",
    "UNINDEX_IF_OLD",
    "UNINDEX_IF_UNCHANGED",
    "Script",
    "eval_command",
    "evalsha",
]


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
# backfill) or 'NOW' (the sessions are written now), ttl ('0': none), then session ids.
INDEX = Script(_NOW + _FORGET_EXPIRED + """
forget_expired(KEYS[1], KEYS[2], ARGV[2])
for i = 3, #ARGV do
  if ARGV[1] == 'NX' then
    redis.call('ZADD', KEYS[2], 'NX', now, ARGV[i])
  else
    redis.call('ZADD', KEYS[2], now, ARGV[i])
  end
  redis.call('ZADD', KEYS[1], 0, ARGV[i])
end
return #ARGV - 2
""")

# KEYS: session key, by-id, by-time. ARGV: session id. The session and its entry go together.
CLEAR = Script("""
local gone = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return gone
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

# KEYS: session key, by-id, by-time. ARGV: session id, cutoff (seconds). Deletes the
# session and its entry if it was last written before the cutoff: 1 if it held
# messages, 0 if it had expired, -1 if it was written since (nothing done).
PRUNE_SESSION = Script("""
local time = redis.call('ZSCORE', KEYS[3], ARGV[1])
if not time or tonumber(time) >= tonumber(ARGV[2]) then return -1 end
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

ALL = (APPEND, PUSH, INDEX, CLEAR, LIST_PAGE, UNINDEX_IF_UNCHANGED, PRUNE_SESSION, UNINDEX_IF_OLD)
BODIES = {script.sha: script.body for script in ALL}
"""Each script's body by its SHA1, for the ``EVAL`` sent when ``EVALSHA`` finds none cached."""


def evalsha(script: Script, keys: Sequence[bytes], args: Sequence[bytes | str | int]
            ) -> tuple[bytes | str | int, ...]:
    """The ``EVALSHA`` command that runs ``script`` on ``keys`` with ``args``."""
    return ("EVALSHA", script.sha, len(keys), *keys, *args)


def eval_command(script: Script, keys: Sequence[bytes], args: Sequence[bytes | str | int]
                 ) -> tuple[bytes | str | int, ...]:
    """The ``EVAL`` command (the body sent along): for pipelines, where a missing script
    could not be sent again for the commands it failed alone."""
    return ("EVAL", script.body, len(keys), *keys, *args)

"""Redis backend for chathistory: ``ChatHistory(session_id, backend="redis", ...)``.

Importing this package does not import redis-py: it loads when a backend is built.
"""

from chathistory_redis.backend import RedisBackend
from chathistory_redis.config import RedisConfig

__all__ = ["RedisBackend", "RedisConfig"]

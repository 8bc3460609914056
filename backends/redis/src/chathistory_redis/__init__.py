"""Redis backend for chathistory: ``ChatHistory(session_id, backend="redis", ...)``.

Importing this package is cheap; redis-py is imported when the backend first
talks to Redis.
"""

from chathistory_redis.backend import RedisBackend
from chathistory_redis.config import RedisConfig
from chathistory_redis.keys import chathistory_key, langchain_community_key

__all__ = ["RedisBackend", "RedisConfig", "chathistory_key", "langchain_community_key"]
__version__ = "0.1.0"

"""Where a session lives: its Redis key, in each layout.

``chathistory`` layout: ``<key_prefix>:{<session>}``, where ``<session>`` is the
session id with ``%``, ``{`` and ``}`` percent-encoded (``%25``, ``%7B``,
``%7D``). The braces are a Redis Cluster hash tag: a cluster hashes only what
lies between the first ``{`` and the first ``}`` after it, and with those three
characters encoded that is exactly the whole session id. Distinct ids give
distinct keys, since the encoding can be undone. ``user-42`` with the default
prefix is ``chathistory:{user-42}``.

``langchain_community`` layout: ``<key_prefix><session>``, byte for byte what
langchain_community's ``RedisChatMessageHistory`` uses (``message_store:user-42``).

Keys are UTF-8. A lone surrogate in a session id is kept (``surrogatepass``),
so even such ids map to keys of their own.
"""

from __future__ import annotations

__all__ = ["chathistory_key", "langchain_community_key", "session_from_chathistory_key"]


def chathistory_key(key_prefix: str, session_id: str) -> bytes:
    """The key of ``session_id`` in the ``chathistory`` layout."""
    tag = session_id.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return f"{key_prefix}:{{{tag}}}".encode("utf-8", "surrogatepass")


def langchain_community_key(key_prefix: str, session_id: str) -> bytes:
    """The key of ``session_id`` in the ``langchain_community`` layout."""
    return (key_prefix + session_id).encode("utf-8", "surrogatepass")


def session_from_chathistory_key(key_prefix: str, key: bytes) -> str:
    """The session id a ``chathistory``-layout key belongs to (for tools that scan keys)."""
    head = f"{key_prefix}:{{".encode()
    if not (key.startswith(head) and key.endswith(b"}")):
        raise ValueError("not a key of this key prefix")
    tag = key[len(head):-1].decode("utf-8", "surrogatepass")
    return tag.replace("%7D", "}").replace("%7B", "{").replace("%25", "%")

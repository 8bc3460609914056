"""Where a session lives: its Redis key, in each layout, and the keys of the sessions index.

``chathistory`` layout: ``<key_prefix>:{<session>}`` (a prefix that already ends
with ``:``, such as ``myapp:``, gets no second one: ``myapp:{<session>}``), where
``<session>`` is the session id with ``%``, ``{`` and ``}`` percent-encoded
(``%25``, ``%7B``, ``%7D``). The braces are a Redis Cluster hash tag: a cluster
hashes only what lies between the first ``{`` and the first ``}`` after it, and
with those three characters encoded (and none in the prefix) that is exactly
the whole session id. Distinct ids give distinct keys, since the encoding can
be undone. ``user-42`` with the default prefix is ``chathistory:{user-42}``.

``langchain_community`` layout: ``<key_prefix><session>``, byte for byte what
langchain_community's ``RedisChatMessageHistory`` uses (``message_store:user-42``).

The sessions index (:func:`index_keys`) is two sorted sets and a marker, in one
hash slot of their own: ``by-id`` (every session id, score 0, so that it pages
in id order with ``ZRANGEBYLEX``) and ``by-time`` (score = last write, in
seconds), and ``scanned``, set once the keys written before the index existed
(or by the peer class) have been added to it. They never look like a session's
key: in the chathistory layout they start with ``<key_prefix>:sessions:`` and
end after the braces; in the langchain_community layout (where any key that
starts with the prefix is a session's) they live under ``chathistory-index:``.

Keys are UTF-8. A lone surrogate in a session id is kept (``surrogatepass``),
so even such ids map to keys of their own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "IndexKeys",
    "chathistory_key",
    "index_keys",
    "key_prefix_problem",
    "langchain_community_key",
    "scan_pattern",
    "session_from_chathistory_key",
    "session_from_key",
    "session_ids_of_keys",
]

LANGCHAIN_INDEX_HEAD = "chathistory-index:"


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


def chathistory_base(key_prefix: str) -> str:
    """``key_prefix`` followed by one ``:`` (none added if it already ends with one)."""
    return key_prefix if key_prefix.endswith(":") else f"{key_prefix}:"


def chathistory_key(key_prefix: str, session_id: str) -> bytes:
    """The key of ``session_id`` in the ``chathistory`` layout."""
    tag = session_id.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return _encode(f"{chathistory_base(key_prefix)}{{{tag}}}")


def langchain_community_key(key_prefix: str, session_id: str) -> bytes:
    """The key of ``session_id`` in the ``langchain_community`` layout."""
    return _encode(key_prefix + session_id)


def session_from_chathistory_key(key_prefix: str, key: bytes) -> str:
    """The session id a ``chathistory``-layout key belongs to (for tools that scan keys)."""
    head = _encode(f"{chathistory_base(key_prefix)}{{")
    tag = key[len(head):-1]
    if not (key.startswith(head) and key.endswith(b"}")) or b"{" in tag or b"}" in tag:
        raise ValueError("not a key of this key prefix")
    return _decode(tag).replace("%7D", "}").replace("%7B", "{").replace("%25", "%")


def session_from_key(layout: str, key_prefix: str, key: bytes) -> str:
    """The session id of ``key`` in ``layout``; ValueError if it is not one of its keys."""
    if layout == "chathistory":
        return session_from_chathistory_key(key_prefix, key)
    head = _encode(key_prefix)
    if not key.startswith(head):
        raise ValueError("not a key of this key prefix")
    return _decode(key[len(head):])


def session_ids_of_keys(layout: str, key_prefix: str, keys: Iterable[bytes]) -> set[bytes]:
    """The ids (UTF-8, as the sessions index holds them) of the sessions ``keys`` belong to.

    :func:`session_from_key` for many keys at once, on bytes (a scan of 10,000
    keys costs a few milliseconds): a key that is no session's key of ``layout``
    and ``key_prefix``, or whose id would not be UTF-8, is left out.
    """
    if layout == "chathistory":
        head = _encode(f"{chathistory_base(key_prefix)}{{")
        tags = [key[len(head):-1] for key in keys if key.startswith(head) and key.endswith(b"}")]
        text = b"\n".join(tags)  # each test below done once for all, where it can be
        if b"{" in text or b"}" in text:
            tags = [tag for tag in tags if b"{" not in tag and b"}" not in tag]
        if b"%" in text:
            tags = [tag.replace(b"%7D", b"}").replace(b"%7B", b"{").replace(b"%25", b"%")
                    for tag in tags]
    else:
        head = _encode(key_prefix)
        tags = [key[len(head):] for key in keys if key.startswith(head)]
        text = b"\n".join(tags)
    try:  # pieces of UTF-8 joined by a newline are UTF-8, and only they are
        _decode(text)
    except UnicodeDecodeError:
        return {tag for tag in tags if _is_text(tag)}
    return set(tags)


def _is_text(raw: bytes) -> bool:
    try:
        _decode(raw)
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
    """The index keys: ``<base>sessions:{<base>}:by-id`` (chathistory layout, ``<base>`` the
    prefix with its ``:``) or ``chathistory-index:{<key_prefix>}:by-id`` (langchain_community);
    likewise ``:by-time`` and ``:scanned``."""
    if layout == "chathistory":
        base = chathistory_base(key_prefix)
        head = f"{base}sessions:{{{base}}}"
    else:
        head = f"{LANGCHAIN_INDEX_HEAD}{{{key_prefix}}}"
    return IndexKeys(_encode(f"{head}:by-id"), _encode(f"{head}:by-time"),
                     _encode(f"{head}:scanned"))


def scan_pattern(layout: str, key_prefix: str) -> bytes:
    """A ``SCAN MATCH`` pattern for the sessions' keys (the prefix's glob characters escaped)."""
    if layout == "chathistory":
        return _encode(_glob_escape(chathistory_base(key_prefix)) + "{*}")
    return _encode(_glob_escape(key_prefix) + "*")


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def key_prefix_problem(layout: str, key_prefix: str) -> str | None:
    """Why ``key_prefix`` cannot be used with ``layout``, or ``None`` when it can.

    Refused are only prefixes that would break the keys: in the chathistory layout
    a brace (it would move the Redis Cluster hash tag off the session id); in the
    langchain_community layout one that is the start of the index's own keys (the
    empty prefix among them), which would make them a session's key too.
    """
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
        if key.startswith(_encode(key_prefix)):
            return (f"is the start of the sessions index's key {_decode(key)!r}, which would "
                    "then also be the key of a session; choose another prefix")
    return None

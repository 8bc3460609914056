"""How redis-py's errors read as chathistory errors, and which may be tried again.

The core's runner repeats an operation while :func:`is_transient` says so: after
a lost connection, a timeout, ``LOADING``, or a cluster refusing for now. An
append whose reply was lost is :class:`ReplyLostError` instead (the driver
raises it), which is not transient: Redis may have stored it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import (
    AskError,
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    ClusterError,
    MaxConnectionsError,
    NoPermissionError,
    RedisClusterException,
    RedisClusterUnreachableError,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chathistory import BackendUnavailableError, ChatHistoryError, PermissionDeniedError

__all__ = ["ReplyLostError", "after_some_done", "cluster_node", "is_transient", "never_sent",
           "reply_lost", "translate"]

_REFUSED_CREDENTIALS = (AuthenticationError, AuthorizationError, NoPermissionError)
# A cluster that refused the command (CLUSTERDOWN, TRYAGAIN; redirected more times than
# redis-py follows, "TTL exhausted") or whose slot map has no node for the key: nothing
# ran, and a moment later a failover or reshard may be done.
_CLUSTER_UNAVAILABLE = (ClusterError, TryAgainError, SlotNotCoveredError,
                        RedisClusterUnreachableError)
_LOST = (RedisConnectionError, RedisTimeoutError)
_NODE_NOTE = "on Redis Cluster node "


class ReplyLostError(BackendUnavailableError):
    """The connection failed after a write was sent (an append: Redis stored all of it or
    none of it). Not repeated, since Redis may have run it. Its ``__cause__`` is redis-py's
    error."""


def never_sent(error: BaseException) -> bool:
    """Whether redis-py's cluster client failed before sending: no connection could be made
    (refused, timed out) or taken from the node's pool.

    ``RedisCluster.execute_command`` connects, sends and reads in one call, so only its
    wording tells them apart: "... connecting to <host>:<port>", "Timeout connecting to
    server". The tests check it on real refused connections.
    """
    return isinstance(error, MaxConnectionsError) or "connecting to" in str(error)


@contextmanager
def reply_lost(where: str, once: str | None, errors: tuple[type[RedisError], ...] = _LOST
               ) -> Iterator[None]:
    """Raise :class:`ReplyLostError` (saying ``once``) where a write that must run once,
    sent whole, lost its reply (an error of ``errors``): it may have run. Not after
    ``LOADING``, which refused it."""
    try:
        yield
    except errors as error:
        if once is not None and not isinstance(error, BusyLoadingError):
            raise ReplyLostError(f"backend 'redis': the connection to {where} was lost after "
                                 f"{once}: {type(error).__name__}: {error}") from error
        raise


@contextmanager
def cluster_node(node: str, once: str | None) -> Iterator[None]:
    """:func:`reply_lost` for a command sent to a cluster ``node`` (unless it was never
    sent); the error is noted with the node for :func:`translate`."""
    try:
        yield
    except RedisError as error:
        error.add_note(_NODE_NOTE + node)
        if not never_sent(error):
            with reply_lost(f"Redis Cluster node {node}", once):
                raise
        raise


def is_transient(error: BaseException) -> bool:
    """Whether the failed call may be repeated: a lost or refused connection, a timeout,
    ``LOADING``, a cluster that refused it for now (``CLUSTERDOWN``, ``TRYAGAIN``, a slot no
    node serves); not refused credentials, nor :class:`ReplyLostError`."""
    return ((isinstance(error, _LOST) and not isinstance(error, _REFUSED_CREDENTIALS))
            or isinstance(error, _CLUSTER_UNAVAILABLE))


def after_some_done(error: BaseException, done: str, *, where: str) -> BaseException:
    """``error``, raised once ``done`` ("1 of 2 sessions were appended"), as the chathistory
    error :func:`translate` makes of it (``ReplyLostError`` kept), saying ``done`` first:
    the caller raises it instead of retrying, which would do those again."""
    translated = translate(error, where=where)
    for kind in (ReplyLostError, PermissionDeniedError, BackendUnavailableError,
                 ChatHistoryError):
        if isinstance(translated, kind):
            said = str(translated).removeprefix("backend 'redis': ")
            return kind(f"backend 'redis': {done}, then {said}")
    return translated


def translate(error: BaseException, *, where: str) -> BaseException:
    """redis-py's ``error`` as a chathistory error naming the cluster node noted on it, or
    ``where``: refused credentials or ACL rights → ``PermissionDeniedError``, a transient
    failure → ``BackendUnavailableError``, a command Redis refused (``WRONGTYPE``...) →
    ``ChatHistoryError``, as is a node not in cluster mode (``RedisClusterException``).
    Errors that are not redis-py's come back unchanged."""
    if not isinstance(error, RedisError | RedisClusterException):
        return error
    notes = getattr(error, "__notes__", ())
    where = next((f"Redis Cluster node {note[len(_NODE_NOTE):]}" for note in notes
                  if note.startswith(_NODE_NOTE)), where)
    said = f"{type(error).__name__}: {error}"
    if isinstance(error, _REFUSED_CREDENTIALS):
        return PermissionDeniedError(f"backend 'redis': {where} refused the credentials: {said}")
    if isinstance(error, (*_LOST, *_CLUSTER_UNAVAILABLE)):
        # Read after "backend 'redis' is unavailable after N attempts: ".
        # No connection could be made (not: none was free in the pool).
        if never_sent(error) and not isinstance(error, MaxConnectionsError):
            said += (" (check that Redis runs there and that the url option, or your client, "
                     "points at it)")
        return BackendUnavailableError(f"{where}: {said}")
    if isinstance(error, AskError):  # MOVED or ASK: to a client that follows neither
        return ChatHistoryError(
            f"backend 'redis': {where} is a Redis Cluster node (it redirected a key to "
            f"{':'.join(map(str, error.node_addr))}): set the option cluster=True "
            "(-o cluster=true)")
    if isinstance(error, ResponseError):
        return ChatHistoryError(f"backend 'redis': {where} refused the command: {error}")
    return ChatHistoryError(f"backend 'redis': {where}: {said}")

"""How redis-py's errors read as chathistory errors, and which calls may be repeated.

Every operation is one Redis command, run through ``chathistory.retry_transient``
with :func:`is_transient` and :func:`translate`. Reads (``LRANGE``) and
``DEL`` may be repeated after any lost connection. An append may be repeated
only when it surely did not run: it was not sent whole (the connection failed
while connecting or sending), or Redis answered ``LOADING`` (it runs nothing
while it loads its data after a restart). When the reply to a sent append is
lost, the client raises :class:`ReplyLostError` instead, which is not
transient: Redis may have stored the batch, and repeating it could store it twice.
"""

from __future__ import annotations

from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    NoPermissionError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chathistory import BackendUnavailableError, ChatHistoryError, PermissionDeniedError

__all__ = ["ReplyLostError", "is_transient", "may_have_run", "translate"]

_REFUSED_CREDENTIALS = (AuthenticationError, AuthorizationError, NoPermissionError)


class ReplyLostError(BackendUnavailableError):
    """The connection failed after an append was sent: Redis stored all of it or none of it.

    Not repeated, since Redis may have stored it. Its ``__cause__`` is redis-py's error.
    """

    def __init__(self, address: str, error: RedisError) -> None:
        super().__init__(
            f"backend 'redis' ({address}): the connection was lost after the append was sent, "
            f"so it was not repeated; Redis stored the whole batch or none of it: "
            f"{type(error).__name__}: {error}"
        )


def may_have_run(error: RedisError) -> bool:
    """Whether a command sent whole may have run although reading its reply raised ``error``.

    Always, except when the reply was ``LOADING``: the server refused the command.
    """
    return not isinstance(error, BusyLoadingError)


def is_transient(error: BaseException) -> bool:
    """Whether the failed call may be repeated: a lost or refused connection, a timeout, or
    ``LOADING``, but not refused credentials (a :class:`ReplyLostError` is not repeated)."""
    return (isinstance(error, (RedisConnectionError, RedisTimeoutError))
            and not isinstance(error, _REFUSED_CREDENTIALS))


def translate(error: BaseException, *, address: str) -> BaseException:
    """redis-py's ``error`` as a chathistory error that names ``address`` (``host:port``).

    Refused credentials or ACL rights → :class:`~chathistory.PermissionDeniedError`;
    a lost connection → :class:`~chathistory.BackendUnavailableError`; a command
    Redis refused (``WRONGTYPE``...) → :class:`~chathistory.ChatHistoryError`.
    Errors that are not redis-py's come back unchanged.
    """
    if not isinstance(error, RedisError):
        return error
    where = f"Redis at {address}"
    said = f"{type(error).__name__}: {error}"
    if isinstance(error, _REFUSED_CREDENTIALS):
        return PermissionDeniedError(f"backend 'redis': {where} refused the credentials: {said}")
    if isinstance(error, (RedisConnectionError, RedisTimeoutError)):
        # Read after "backend 'redis' is unavailable after N attempts: ".
        return BackendUnavailableError(f"{where}: {said}")
    if isinstance(error, ResponseError):
        return ChatHistoryError(f"backend 'redis': {where} refused the command: {error}")
    return ChatHistoryError(f"backend 'redis': {where}: {said}")

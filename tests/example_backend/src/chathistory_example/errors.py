"""How file-system errors read as chathistory errors, and which ones may be tried again."""

from __future__ import annotations

import errno

from chathistory import BackendUnavailableError, PermissionDeniedError

# A busy file or a stale NFS handle may work a moment later; a failed append
# was rolled back (see SessionFiles.append), so repeating it is safe.
TRANSIENT = {errno.EAGAIN, errno.EBUSY, errno.ESTALE}
REFUSED = {errno.EACCES, errno.EPERM, errno.EROFS}


def is_transient(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in TRANSIENT


def translate(error: BaseException) -> BaseException:
    """``EACCES``/``EPERM``/``EROFS`` → PermissionDeniedError; any other OSError (``ENOSPC``,
    a missing directory...) → BackendUnavailableError; anything else unchanged."""
    if not isinstance(error, OSError):
        return error
    reason = f"backend 'jsonl' cannot use {error.filename or 'its directory'}: {error.strerror}"
    if error.errno in REFUSED:
        return PermissionDeniedError(reason)
    return BackendUnavailableError(reason)

"""JSON Patch (ADD, REPLACE, REMOVE) on RFC 6901 pointers, applied copy-on-write.

Stored documents are never mutated in place: an operation copies each container
on its path before changing it. A failed operation therefore leaves the original
document untouched, and readers may share stored objects without locking them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

SUPPORTED_OPS = ("ADD", "REPLACE", "REMOVE")
# Rockset knows these too; the emulator refuses them rather than guess their semantics.
UNSUPPORTED_OPS = ("COPY", "MOVE", "TEST", "INCREMENT")
SPECIAL_FIELDS = frozenset({"_id", "_event_time", "_meta"})

_BAD_ESCAPE = re.compile(r"~(?![01])")
_INDEX = re.compile(r"0|[1-9][0-9]*")


class InvalidPatch(ValueError):
    """The request itself is malformed (answered as a 400 for the whole request)."""


class PatchFailed(ValueError):
    """An operation cannot apply to this document (a per-document ERROR status)."""


@dataclass(frozen=True)
class Operation:
    op: str
    path: str
    tokens: tuple[str, ...]
    value: Any = None


def parse_pointer(path: str) -> tuple[str, ...]:
    """Split an RFC 6901 JSON pointer into unescaped reference tokens."""
    if path == "":
        return ()
    if not path.startswith("/"):
        raise InvalidPatch(f"invalid JSON pointer {path!r}: it must be empty or start with '/'")
    if _BAD_ESCAPE.search(path):
        raise InvalidPatch(f"invalid JSON pointer {path!r}: '~' must be followed by 0 or 1")
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/"))


def parse_operation(raw: Any) -> Operation:
    """Validate one operation of a request body."""
    if not isinstance(raw, dict):
        raise InvalidPatch("each patch operation must be a JSON object")
    op = raw.get("op")
    if not isinstance(op, str):
        raise InvalidPatch("patch operation is missing the string field 'op'")
    name = op.upper()
    if name in UNSUPPORTED_OPS:
        raise InvalidPatch(
            f"patch op '{op}' is not supported by the emulator (only ADD, REPLACE, REMOVE)"
        )
    if name not in SUPPORTED_OPS:
        raise InvalidPatch(f"unknown patch op '{op}'")
    path = raw.get("path")
    if not isinstance(path, str):
        raise InvalidPatch(f"{name} operation is missing the string field 'path'")
    if name in ("ADD", "REPLACE") and "value" not in raw:
        raise InvalidPatch(f"{name} operation on '{path}' requires a 'value'")
    return Operation(name, path, parse_pointer(path), raw.get("value"))


def apply_operations(document: dict[str, Any], operations: list[Operation]) -> dict[str, Any]:
    """Apply all operations and return the new document, or raise PatchFailed.

    The input document is never modified.
    """
    root: dict[str, Any] = dict(document)
    for operation in operations:
        _apply(root, operation)
    return root


def _apply(root: dict[str, Any], operation: Operation) -> None:
    tokens = operation.tokens
    if not tokens:
        raise PatchFailed(f"{operation.op} on the document root is not allowed")
    if tokens[0] in SPECIAL_FIELDS:
        raise PatchFailed(f"special field '{tokens[0]}' cannot be patched")
    parent = _copy_path(root, tokens[:-1], operation.path)
    key = tokens[-1]
    if isinstance(parent, dict):
        if operation.op == "ADD":
            parent[key] = operation.value
        elif key not in parent:
            raise PatchFailed(f"path '{operation.path}' does not exist")
        elif operation.op == "REPLACE":
            parent[key] = operation.value
        else:
            del parent[key]
    elif isinstance(parent, list):
        if operation.op == "ADD" and key == "-":
            parent.append(operation.value)
            return
        index = _index(key, operation.path)
        limit = len(parent) + 1 if operation.op == "ADD" else len(parent)
        if index >= limit:
            raise PatchFailed(f"array index {index} is out of bounds in path '{operation.path}'")
        if operation.op == "ADD":
            parent.insert(index, operation.value)
        elif operation.op == "REPLACE":
            parent[index] = operation.value
        else:
            del parent[index]
    else:
        raise PatchFailed(f"the parent of path '{operation.path}' is not an object or an array")


def _copy_path(root: dict[str, Any], tokens: tuple[str, ...], path: str) -> Any:
    """Walk to the container at `tokens`, replacing each container on the way by a copy."""
    node: Any = root
    for token in tokens:
        if isinstance(node, dict):
            if token not in node:
                raise PatchFailed(f"path '{path}' does not exist")
            child = node[token]
            copied = _shallow_copy(child)
            node[token] = copied
        elif isinstance(node, list):
            index = _index(token, path)
            if index >= len(node):
                raise PatchFailed(f"array index {index} is out of bounds in path '{path}'")
            copied = _shallow_copy(node[index])
            node[index] = copied
        else:
            raise PatchFailed(f"path '{path}' runs through a value that is not a container")
        node = copied
    return node


def _shallow_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    return value


def _index(token: str, path: str) -> int:
    if not _INDEX.fullmatch(token):
        raise PatchFailed(f"'{token}' is not a valid array index in path '{path}'")
    return int(token)

"""Messages to records and back, and the JSON encoding every backend shares.

A record is exactly what ``langchain_core.messages.message_to_dict`` makes:
``{"type": "human", "data": {...every field of the message...}}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict
from pydantic import ValidationError

from chathistory.errors import RecordError

__all__ = ["decode_record", "decode_records", "encode_record", "encode_records", "to_message",
           "to_messages", "to_records"]

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_decode_document = json.JSONDecoder().raw_decode


def to_records(messages: Iterable[BaseMessage]) -> list[dict[str, Any]]:
    """Turn messages into records. Anything that is not a ``BaseMessage`` is a ``TypeError``."""
    records = []
    for position, message in enumerate(messages):
        if not isinstance(message, BaseMessage):
            raise TypeError(
                f"message {position} is a {type(message).__name__}, not a "
                "langchain_core.messages.BaseMessage"
            )
        records.append(message_to_dict(message))
    return records


def to_messages(records: Sequence[dict[str, Any]], *, session_id: str | None = None,
                first_position: int = 0) -> list[BaseMessage]:
    """Turn records back into messages, or raise :class:`RecordError` naming the bad one.

    Args:
        records: Records as a backend's ``fetch`` returns them, oldest first.
        session_id: The session they belong to, named in the error.
        first_position: The position of ``records[0]`` in its session, named in
            the error: 0 for a whole session (the oldest record is 0); for the
            newest records only (a ``limit``), ``-len(records)``, so positions
            count back from the newest, which is -1.

    Raises:
        RecordError: a record is not one ``message_to_dict`` makes, for example
            ``{"type": "bogus", ...}``: "session 'ada': record 3 cannot be read
            as a message: unknown message type 'bogus'".
    """
    try:
        return messages_from_dict(records)
    except (AttributeError, KeyError, TypeError, ValueError):
        pass  # find which record, and say why, below
    messages = []
    for position, record in enumerate(records, start=first_position):
        try:
            messages.append(to_message(record))
        except RecordError as exc:
            where = "" if session_id is None else f"session {session_id!r}: "
            raise RecordError(
                f"{where}record {position} cannot be read as a message: {exc}") from None
    return messages


def to_message(record: object) -> BaseMessage:
    """The message of one record, or a :class:`RecordError` saying why it has none.

    The reason is short, for a caller to place ("line 7: ...", "record 3 ..."):
    ``unknown message type 'bogus'``, ``missing key 'data'``, or what the
    message class refused.
    """
    if not isinstance(record, Mapping):
        raise RecordError(f"a record must be a JSON object; this is {_json_type(record)}")
    kind = record.get("type")
    if not isinstance(kind, str):
        raise RecordError("missing key 'type'" if kind is None
                          else f"'type' must be a string; this is {_json_type(kind)}")
    if "data" not in record:
        raise RecordError("missing key 'data'")
    if not isinstance(record["data"], Mapping):
        raise RecordError(f"'data' must be an object; this is {_json_type(record['data'])}")
    try:
        (message,) = messages_from_dict([dict(record)])
    except ValidationError as exc:
        # A union field reports one error per member; the first says enough.
        problems = {str(error["loc"][0]) if error["loc"] else "data": error["msg"]
                    for error in reversed(exc.errors())}
        reason = "; ".join(f"{field}: {message}" for field, message in reversed(problems.items()))
        raise RecordError(f"the data of a {kind!r} message is refused ({reason})") from None
    except ValueError as exc:
        if str(exc).startswith("Got unexpected message type"):
            raise RecordError(f"unknown message type {kind!r}") from None
        raise RecordError(" ".join(str(exc).split())) from None
    except (AttributeError, KeyError, TypeError) as exc:
        raise RecordError(f"the data of a {kind!r} message is refused ({exc})") from None
    return message


def _json_type(value: object) -> str:
    """The JSON name of a decoded value's type: array, string, number..."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), f"a {type(value).__name__}")


def encode_record(record: Mapping[str, Any]) -> str:
    """Encode one record as compact JSON, or raise :class:`RecordError` saying why not.

    NaN, infinity and lone surrogates are refused, as strict JSON stores
    (PostgreSQL's jsonb) refuse them.
    """
    return encode_records((record,))[0]


def encode_records(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """:func:`encode_record` of each record, in order, in one call (one frame, not one each).

    Raises:
        RecordError: a record cannot be stored as JSON (nothing is returned).
    """
    encode = _encoder.encode
    texts = []
    try:
        for record in records:
            text = encode(record)
            if not text.isascii():
                # A lone surrogate is no Unicode: no store can keep it as UTF-8.
                text.encode("utf-8")
            texts.append(text)
    except (TypeError, ValueError) as exc:
        raise RecordError(f"message cannot be stored as JSON: {exc}") from None
    return texts


def decode_record(text: str | bytes) -> dict[str, Any]:
    """Decode what :func:`encode_record` made; anything but a JSON object is a RecordError."""
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise RecordError(f"stored record is not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise RecordError(f"stored record is a JSON {type(record).__name__}, not an object")
    return record


def decode_records(texts: Iterable[str | bytes]) -> list[dict[str, Any]]:
    """:func:`decode_record` of each text, in order, in one call.

    A text that is one JSON object and nothing else (what :func:`encode_record`
    makes) goes straight to the parser ``json.loads`` uses, without its three
    Python frames and two whitespace scans per text (10 records: about half the
    time); any other text (bytes, surrounding whitespace, no object, no JSON)
    goes through :func:`decode_record`, which decodes it or raises its
    :class:`RecordError`.
    """
    records = []
    for text in texts:
        try:
            record, end = _decode_document(text)  # type: ignore[arg-type]
            whole = end == len(text) and type(record) is dict
        except (TypeError, ValueError):
            whole = False
        records.append(record if whole else decode_record(text))
    return records

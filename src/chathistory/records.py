"""Messages to records and back, and the JSON encoding every backend shares.

A record is exactly what ``langchain_core.messages.message_to_dict`` makes:
``{"type": "human", "data": {...every field of the message...}}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict

from chathistory.errors import RecordError

__all__ = ["decode_record", "encode_record", "to_messages", "to_records"]

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


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


def to_messages(records: Sequence[dict[str, Any]]) -> list[BaseMessage]:
    """Turn records back into messages."""
    return messages_from_dict(records)


def encode_record(record: Mapping[str, Any]) -> str:
    """Encode one record as compact JSON, or raise :class:`RecordError` saying why not.

    NaN, infinity and lone surrogates are refused, as strict JSON stores
    (PostgreSQL's jsonb) refuse them.
    """
    try:
        text = _encoder.encode(record)
        if not text.isascii():
            # A lone surrogate is no Unicode: no store can keep it as UTF-8.
            text.encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise RecordError(f"message cannot be stored as JSON: {exc}") from None
    return text


def decode_record(text: str | bytes) -> dict[str, Any]:
    """Decode what :func:`encode_record` made; anything but a JSON object is a RecordError."""
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise RecordError(f"stored record is not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise RecordError(f"stored record is a JSON {type(record).__name__}, not an object")
    return record

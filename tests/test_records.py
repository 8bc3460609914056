import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from chathistory import RecordError, decode_record, encode_record, to_messages, to_records
from chathistory.testing.samples import sample_messages


def test_every_message_type_round_trips_with_every_field() -> None:
    messages = sample_messages()
    back = to_messages([decode_record(encode_record(r)) for r in to_records(messages)])
    assert [type(m) for m in back] == [type(m) for m in messages]
    for original, restored in zip(messages, back, strict=True):
        # model_dump compares every field (ids, names, tool calls, metadata, artifact, status).
        assert restored.model_dump() == original.model_dump()


def test_fields_a_peer_would_lose_survive() -> None:
    ai, tool = sample_messages()[2], sample_messages()[3]
    restored_ai, restored_tool = to_messages(
        [decode_record(encode_record(r)) for r in to_records([ai, tool])])
    assert isinstance(restored_ai, AIMessage)
    assert restored_ai.tool_calls == ai.tool_calls
    assert restored_ai.invalid_tool_calls == ai.invalid_tool_calls
    assert restored_ai.usage_metadata == ai.usage_metadata
    assert restored_ai.id == "ai-1"
    assert restored_tool.artifact == {"hits": [1, 2.5, None, True]}  # type: ignore[attr-defined]


def test_a_one_megabyte_non_ascii_message_round_trips() -> None:
    message = HumanMessage("é🙂" * 350_000)
    (restored,) = to_messages([decode_record(encode_record(to_records([message])[0]))])
    assert restored == message
    assert len(encode_record(to_records([message])[0]).encode()) > 1_000_000


def test_encoding_keeps_unicode_as_is_and_is_compact() -> None:
    text = encode_record({"data": {"content": "héllo"}})
    assert text == '{"data":{"content":"héllo"}}'
    assert json.loads(text) == {"data": {"content": "héllo"}}


@pytest.mark.parametrize("value", [object(), {1, 2}, float("nan"), float("inf"), "lone \ud800"])
def test_values_json_cannot_hold_are_refused_with_a_clear_error(value: object) -> None:
    with pytest.raises(RecordError, match="cannot be stored as JSON"):
        encode_record({"data": {"x": value}})


def test_non_messages_are_a_type_error_naming_the_type() -> None:
    with pytest.raises(TypeError, match="message 1 is a dict"):
        to_records([HumanMessage("ok"), {"role": "user"}])  # type: ignore[list-item]


@pytest.mark.parametrize("stored", ["[1, 2]", '"text"', "{not json"])
def test_a_stored_value_that_is_not_a_json_object_is_a_record_error(stored: str) -> None:
    with pytest.raises(RecordError):
        decode_record(stored)

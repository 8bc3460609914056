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


@pytest.mark.parametrize(("record", "reason"), [
    ({"type": "bogus", "data": {"content": "x"}}, "unknown message type 'bogus'"),
    ({"type": "human"}, "missing key 'data'"),
    ({"data": {"content": "x"}}, "missing key 'type'"),
    ({"type": 3, "data": {}}, "'type' must be a string; this is a number"),
    ({"type": "human", "data": []}, "'data' must be an object; this is an array"),
    ({"type": "human", "data": {"content": 5}}, "the data of a 'human' message is refused "
                                                "(content: Input should be a valid string)"),
    ([1], "a record must be a JSON object; this is an array"),
])
def test_a_record_that_is_no_message_is_a_record_error_saying_why(record: object,
                                                                  reason: str) -> None:
    from chathistory.records import to_message

    with pytest.raises(RecordError) as caught:
        to_message(record)
    assert str(caught.value) == reason
    good = to_records([HumanMessage("ok")])
    with pytest.raises(RecordError) as caught:
        to_messages([*good, *good, record], session_id="ada")  # type: ignore[list-item]
    assert str(caught.value) == f"session 'ada': record 2 cannot be read as a message: {reason}"
    with pytest.raises(RecordError, match=r"^record -1 cannot be read as a message"):
        to_messages([*good, record], first_position=-2)  # type: ignore[list-item]


def test_to_messages_gives_what_langchain_core_gives() -> None:
    from langchain_core.messages import messages_from_dict

    records = to_records(sample_messages())
    assert to_messages(records, session_id="s") == messages_from_dict(records)


@pytest.mark.parametrize("stored", [
    '{"type":"human","data":{"content":"hi"}}',
    ' {"a": 1} ', '\t{"a":1}\n', b'{"a":1}', '{"a":1}'.encode("utf-16"), '{"a":NaN}',
    '{"a":1e400,"b":123456789012345678901234567890,"c":"\\ud800"}', '{"a":1,"a":2}',
])
def test_decode_records_gives_what_decode_record_gives_for_each(stored: str | bytes) -> None:
    from chathistory.records import decode_records

    plain = '{"n":0}'
    expected = [decode_record(plain), decode_record(stored), decode_record(plain)]
    got = decode_records([plain, stored, plain])
    assert json.dumps(got) == json.dumps(expected)  # NaN != NaN: compare the texts
    assert [type(record) for record in got] == [dict, dict, dict]


@pytest.mark.parametrize("stored", [
    "[1, 2]", '"text"', "{not json", "", '{"a":1}x', '{"a":1} {"b":2}', "\ufeff{}", "null",
])
def test_decode_records_raises_the_error_decode_record_raises(stored: str) -> None:
    from chathistory.records import decode_records

    with pytest.raises(RecordError) as caught:
        decode_record(stored)
    with pytest.raises(RecordError) as caught_in_batch:
        decode_records(['{"n":0}', stored])
    assert str(caught_in_batch.value) == str(caught.value)


def test_encode_records_encodes_each_as_encode_record_and_refuses_like_it() -> None:
    from chathistory.records import encode_records

    records = to_records(sample_messages())
    assert encode_records(records) == [encode_record(record) for record in records]
    assert encode_records(iter(records[:2])) == [encode_record(r) for r in records[:2]]
    assert encode_records([]) == []
    with pytest.raises(RecordError, match="cannot be stored as JSON"):
        encode_records([records[0], {"data": {"x": float("nan")}}])

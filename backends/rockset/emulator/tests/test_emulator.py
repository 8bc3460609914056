"""The Rockset emulator, driven by the real rockset 2.1.2 SDK over real HTTP (no mocks)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3  # type: ignore[import-untyped]
from rockset import exceptions as rs_exc  # type: ignore[import-untyped]
from rockset.model.patch_document import PatchDocument  # type: ignore[import-untyped]
from rockset.model.patch_operation import PatchOperation  # type: ignore[import-untyped]
from rockset_emulator import RocksetEmulator

WS_PATH = "/v1/orgs/self/ws/commons/collections"
ERROR_KEYS = {"message", "type", "line", "column", "trace_id", "error_id", "query_id"}
UNNEST = 'SELECT * FROM UNNEST((SELECT "messages" FROM "commons"."chat" WHERE _id = :sid))'


# ---- helpers -------------------------------------------------------------------------------


@pytest.fixture
def emu(rockset_emulator: RocksetEmulator) -> RocksetEmulator:
    return rockset_emulator


@pytest.fixture
def rs(emu: RocksetEmulator) -> Any:
    return emu.client()


@pytest.fixture
def chat(rs: Any) -> Any:
    """A READY collection commons.chat holding session s1 with three messages."""
    rs.Collections.create_s3_collection(name="chat")
    messages = [message(i) for i in range(3)]
    rs.Documents.add_documents(collection="chat", data=[{"_id": "s1", "messages": messages}])
    return rs


def message(i: int) -> dict[str, Any]:
    return {"type": "human", "data": {"content": f"m{i}", "additional_kwargs": {"id": f"id{i}"}}}


def raw(
    emu: RocksetEmulator,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """A request without the SDK: the status and the parsed JSON body."""
    all_headers = {"Authorization": f"apikey {emu.api_key}", "Content-Type": "application/json"}
    all_headers.update(headers or {})
    request = urllib.request.Request(emu.url + path, data=body, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["Content-Type"] == "application/json"
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        assert error.headers["Content-Type"] == "application/json"
        return error.code, json.loads(error.read())


def error_of(exc: pytest.ExceptionInfo[Any]) -> dict[str, Any]:
    """The ErrorModel of an SDK exception (the SDK keeps the raw body as a str)."""
    body: dict[str, Any] = json.loads(exc.value.body)
    assert set(body) == ERROR_KEYS
    return body


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "condition not reached in time"
        time.sleep(0.01)
    return time.monotonic() - started


def seq(offset: str) -> int:
    return int(offset.rsplit(":", 1)[1])


def sql(rs: Any, query: str, **params: Any) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = rs.sql(query, params=params or None).results
    return [dict(row) for row in results]


# ---- collections -----------------------------------------------------------------------


def test_collection_lifecycle_created_then_ready() -> None:
    with RocksetEmulator(ready_delay=0.2) as emu:
        rs = emu.client()
        created = rs.Collections.create_s3_collection(
            name="chat", description="d", retention_secs=3600
        )
        assert created.data.status == "CREATED"
        assert created.data.name == "chat" and created.data.workspace == "commons"
        assert rs.Collections.get(collection="chat").data.status == "CREATED"
        with pytest.raises(rs_exc.BadRequestException) as not_ready:
            rs.Documents.add_documents(collection="chat", data=[{"_id": "a"}])
        assert not_ready.value.status == 400
        assert error_of(not_ready)["type"] == "NOT_READY"

        wait_until(lambda: rs.Collections.get(collection="chat").data.status == "READY")
        got = rs.Collections.get(collection="chat").data
        assert got.description == "d" and got.retention_secs == 3600
        assert [c.name for c in rs.Collections.list().data] == ["chat"]
        assert [c.name for c in rs.Collections.workspace_collections().data] == ["chat"]

        assert rs.Collections.delete(collection="chat").data.status == "DELETED"
        with pytest.raises(rs_exc.NotFoundException) as missing:
            rs.Collections.get(collection="chat")
        assert error_of(missing)["message"] == (
            "Collection 'chat' not found in workspace 'commons'"
        )


def test_collections_per_workspace(rs: Any) -> None:
    rs.Collections.create_s3_collection(name="a", workspace="ws1")
    rs.Collections.create_s3_collection(name="b", workspace="ws2")
    assert [c.name for c in rs.Collections.workspace_collections(workspace="ws2").data] == ["b"]
    assert {(c.workspace, c.name) for c in rs.Collections.list().data} == {
        ("ws1", "a"),
        ("ws2", "b"),
    }
    with pytest.raises(rs_exc.NotFoundException):
        rs.Collections.get(collection="a")  # workspace defaults to commons


def test_duplicate_collection_is_409(rs: Any) -> None:
    rs.Collections.create_s3_collection(name="chat")
    with pytest.raises(rs_exc.BadRequestException) as exc:
        rs.Collections.create_s3_collection(name="chat")
    assert exc.value.status == 409
    assert error_of(exc)["type"] == "ALREADYEXISTS"


def test_missing_collection_is_404_for_every_endpoint(rs: Any) -> None:
    with pytest.raises(rs_exc.NotFoundException):
        rs.Collections.delete(collection="nope")
    with pytest.raises(rs_exc.NotFoundException):
        rs.Documents.add_documents(collection="nope", data=[{"_id": "a"}])
    with pytest.raises(rs_exc.NotFoundException):
        rs.Collections.get_collection_offsets(collection="nope", name=[])


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "bad name!"}',
        b'{"name": ""}',
        b'{"name": 5}',
        b'{"name": "ok", "retention_secs": 5}',
        b'{"name": "ok", "sources": [{"s3": {}}]}',
    ],
)
def test_create_collection_rejects_bad_input(emu: RocksetEmulator, body: bytes) -> None:
    status, error = raw(emu, "POST", WS_PATH, body)
    assert status == 400 and error["type"] == "INVALIDINPUT" and set(error) == ERROR_KEYS
    assert raw(emu, "GET", "/v1/orgs/self/collections") == (200, {"data": []})


# ---- documents -----------------------------------------------------------------------------


def test_add_upserts_whole_documents_and_generates_ids(emu: RocksetEmulator, rs: Any) -> None:
    rs.Collections.create_s3_collection(name="chat")
    response = rs.Documents.add_documents(
        collection="chat", data=[{"_id": "s1", "a": 1, "b": 2}, {"x": True}]
    )
    statuses = response.data
    assert [s.status for s in statuses] == ["ADDED", "ADDED"]
    assert statuses[0]["_id"] == "s1" and statuses[0]["_collection"] == "chat"
    generated = statuses[1]["_id"]
    assert len(generated) == 36  # a uuid
    assert response.last_offset == "f1:0:0:0:1"

    second = rs.Documents.add_documents(collection="chat", data=[{"_id": "s1", "c": 3}])
    assert second.last_offset == "f1:0:0:0:2"
    stored = emu.documents("commons", "chat")
    assert all(isinstance(document.pop("_event_time"), str) for document in stored.values())
    assert stored == {
        "s1": {"_id": "s1", "c": 3},
        generated: {"_id": generated, "x": True},
    }


def test_patch_add_replace_remove(emu: RocksetEmulator, rs: Any) -> None:
    rs.Collections.create_s3_collection(name="chat")
    rs.Documents.add_documents(
        collection="chat",
        data=[{"_id": "s1", "messages": [{"n": 0}], "title": "t", "a/b": {"c~d": 1}}],
    )

    def op(name: str, path: str, value: Any = None) -> Any:
        if name == "REMOVE":
            return PatchOperation(op=name, path=path)
        return PatchOperation(op=name, path=path, value=value, _check_type=False)

    response = rs.Documents.patch_documents(
        collection="chat",
        data=[
            PatchDocument(
                id="s1",
                patch=[
                    op("ADD", "/messages/-", {"n": 2}),
                    op("ADD", "/messages/1", {"n": 1}),
                    op("REPLACE", "/title", "new"),
                    op("REPLACE", "/a~1b/c~0d", [1, 2]),
                    op("ADD", "/extra", 5),
                    op("REMOVE", "/extra"),
                ],
            )
        ],
    )
    assert [s.status for s in response.data] == ["PATCHED"]
    patched = emu.documents("commons", "chat")["s1"]
    assert patched.pop("_event_time")  # the add's, untouched by the patch
    assert patched == {
        "_id": "s1",
        "messages": [{"n": 0}, {"n": 1}, {"n": 2}],
        "title": "new",
        "a/b": {"c~d": [1, 2]},
    }


def test_patch_op_names_are_case_insensitive_on_the_wire(emu: RocksetEmulator, rs: Any) -> None:
    rs.Collections.create_s3_collection(name="chat")
    rs.Documents.add_documents(collection="chat", data=[{"_id": "s1", "messages": []}])
    body = {"data": [{"_id": "s1", "patch": [{"op": "add", "path": "/messages/-", "value": 1}]}]}
    status, response = raw(emu, "PATCH", f"{WS_PATH}/chat/docs", json.dumps(body).encode())
    assert status == 200 and response["data"][0]["status"] == "PATCHED"
    assert emu.documents("commons", "chat")["s1"]["messages"] == [1]


def test_patch_is_atomic_per_document(emu: RocksetEmulator, rs: Any) -> None:
    rs.Collections.create_s3_collection(name="chat")
    rs.Documents.add_documents(
        collection="chat", data=[{"_id": "s1", "messages": [1]}, {"_id": "s2", "messages": []}]
    )
    before = emu.documents("commons", "chat")
    response = rs.Documents.patch_documents(
        collection="chat",
        data=[
            {
                "id": "s1",
                "patch": [
                    {"op": "ADD", "path": "/messages/-", "value": {"ok": 1}},
                    {"op": "REMOVE", "path": "/missing"},
                ],
            },
            {"id": "s2", "patch": [{"op": "ADD", "path": "/messages/-", "value": {"ok": 2}}]},
        ],
    )
    failed, patched = response.data
    assert failed.status == "ERROR"
    assert failed.error.type == "INVALIDINPUT" and "/missing" in failed.error.message
    assert patched.status == "PATCHED"
    after = emu.documents("commons", "chat")
    assert after["s1"] == before["s1"]
    assert after["s2"]["messages"] == [{"ok": 2}]


def test_patch_of_missing_document_is_an_error_status(rs: Any) -> None:
    rs.Collections.create_s3_collection(name="chat")
    response = rs.Documents.patch_documents(
        collection="chat",
        data=[{"id": "ghost", "patch": [{"op": "ADD", "path": "/messages/-", "value": {}}]}],
    )
    (status,) = response.data
    assert status.status == "ERROR" and status["_id"] == "ghost"
    assert status.error.type == "NOTFOUND" and status.error.message == "document not found"
    assert response.last_offset.startswith("f1:")


def test_delete_documents(emu: RocksetEmulator, chat: Any) -> None:
    response = chat.Documents.delete_documents(collection="chat", data=[{"id": "s1"}])
    assert [s.status for s in response.data] == ["DELETED"]
    assert emu.documents("commons", "chat") == {}
    assert sql(chat, UNNEST, sid="s1") == []


@pytest.mark.parametrize(
    ("method", "body", "fragment"),
    [
        ("POST", b"not json", "not valid JSON"),
        ("POST", b"", "empty"),
        ("POST", b"[1, 2]", "JSON object"),
        ("POST", b'{"rows": []}', "'data'"),
        ("POST", b'{"data": {"_id": "a"}}', "'data'"),
        ("POST", b'{"data": [1]}', "JSON object"),
        ("POST", b'{"data": [{"_id": 7}]}', "_id"),
        ("PATCH", b'{"data": [{"_id": "s1"}]}', "'patch'"),
        ("PATCH", b'{"data": [{"_id": "s1", "patch": {}}]}', "'patch'"),
        ("PATCH", b'{"data": [{"patch": []}]}', "_id"),
        ("PATCH", b'{"data": [{"_id": "s1", "patch": [{"op": "ADD", "path": "/a"}]}]}', "value"),
        ("PATCH", b'{"data": [{"_id": "s1", "patch": [{"op": "FROB", "path": "/a"}]}]}', "FROB"),
        ("PATCH", b'{"data": [{"_id": "s1", "patch": [{"op": "MOVE", "path": "/a"}]}]}', "MOVE"),
        (
            "PATCH",
            b'{"data": [{"_id": "s1", "patch": [{"op": "ADD", "path": "a", "value": 1}]}]}',
            "pointer",
        ),
        ("DELETE", b'{"data": [{"id": "s1"}]}', "_id"),
    ],
)
def test_malformed_write_bodies_are_400(
    emu: RocksetEmulator, chat: Any, method: str, body: bytes, fragment: str
) -> None:
    before = emu.documents("commons", "chat")
    status, error = raw(emu, method, f"{WS_PATH}/chat/docs", body)
    assert status == 400, error
    assert set(error) == ERROR_KEYS and error["type"] == "INVALIDINPUT"
    assert fragment in error["message"]
    assert emu.documents("commons", "chat") == before


def test_unknown_route_and_method_are_json_errors(emu: RocksetEmulator) -> None:
    status, error = raw(emu, "GET", "/v1/orgs/self/nothing")
    assert status == 404 and error["type"] == "NOTFOUND"
    status, error = raw(emu, "PUT", f"{WS_PATH}/chat/docs", b"{}")
    assert status == 405 and error["type"] == "METHODNOTALLOWED"


# ---- SQL -----------------------------------------------------------------------------------


def test_sql_document_exists(chat: Any) -> None:
    query = 'SELECT 1\n  FROM "commons"."chat"\n  WHERE _id=:session_id\n  LIMIT 1'
    assert sql(chat, query, session_id="s1") == [{"?INT": 1}]
    assert sql(chat, query, session_id="nobody") == []


def test_sql_unnest_spreads_objects(chat: Any) -> None:
    rows = sql(chat, UNNEST, sid="s1")
    assert rows == [message(i) for i in range(3)]
    spaced = UNNEST.replace("UNNEST((", "unnest ((").replace("SELECT", "select")
    assert sql(chat, spaced, sid="s1") == rows
    assert sql(chat, UNNEST, sid="nobody") == []


def test_sql_unnest_scalars_and_missing_field(chat: Any) -> None:
    chat.Documents.add_documents(collection="chat", data=[{"_id": "s2", "messages": [1, "x"]}])
    chat.Documents.add_documents(collection="chat", data=[{"_id": "s3"}])
    assert sql(chat, UNNEST, sid="s2") == [{"unnest": 1}, {"unnest": "x"}]
    assert sql(chat, UNNEST, sid="s3") == []


def test_sql_unnest_find_by_message_id(chat: Any) -> None:
    query = """
        SELECT *
        FROM UNNEST((
            SELECT messages
            FROM "commons"."chat"
            WHERE _id = :session_id
        )) AS message
        WHERE message.data.additional_kwargs.id = :message_id
        LIMIT 1
    """
    assert sql(chat, query, session_id="s1", message_id="id1") == [message(1)]
    assert sql(chat, query, session_id="s1", message_id="id9") == []
    assert sql(chat, query, session_id="s1", message_id=1) == []  # typed: 1 != "id1"


def test_sql_select_field(chat: Any) -> None:
    query = "SELECT messages AS msgs FROM commons.chat WHERE _id = :sid"
    assert sql(chat, query, sid="s1") == [{"msgs": [message(i) for i in range(3)]}]
    assert sql(chat, query, sid="nobody") == []
    other = 'SELECT "other" AS o FROM commons.chat WHERE "_id" = :sid'
    assert sql(chat, other, sid="s1") == [{}]


@pytest.mark.parametrize(("n", "expected"), [(2, [1, 2]), (3, [0, 1, 2]), (10, [0, 1, 2]), (0, [])])
def test_sql_slice_newest(chat: Any, n: int, expected: list[int]) -> None:
    query = (
        "SELECT SLICE(messages, GREATEST(ARRAY_LENGTH(messages) - :n + 1, 1)) AS tail "
        "FROM commons.chat WHERE _id = :sid"
    )
    assert sql(chat, query, sid="s1", n=n) == [{"tail": [message(i) for i in expected]}]


def test_sql_array_length_and_count(chat: Any) -> None:
    query = 'SELECT ARRAY_LENGTH("messages") AS n FROM "commons"."chat" WHERE _id = :sid'
    assert sql(chat, query, sid="s1") == [{"n": 3}]
    assert sql(chat, query, sid="nobody") == []
    chat.Documents.add_documents(collection="chat", data=[{"_id": "s2"}])
    assert sql(chat, "select count(*) as total from commons.chat;") == [{"total": 2}]


PAGE = (
    'SELECT _id AS "s", ARRAY_LENGTH("messages") AS "n", "written" AS "w" FROM "commons"."chat" '
    'WHERE _id > :after AND ARRAY_LENGTH("messages") > 0 ORDER BY _id LIMIT {limit}'
)


def test_sql_page_of_sessions_in_id_order(chat: Any) -> None:
    chat.Documents.add_documents(collection="chat", data=[
        {"_id": "s0", "messages": [1, 2], "written": "t0"},
        {"_id": "s2", "messages": []},  # empty: not listed
        {"_id": "s3"},  # no array: not listed
        {"_id": "ü", "messages": [1], "written": None},  # null is left out, like a missing field
    ])
    everything = [{"s": "s0", "n": 2, "w": "t0"}, {"s": "s1", "n": 3}, {"s": "ü", "n": 1}]
    assert sql(chat, PAGE.format(limit=10), after="") == everything
    assert sql(chat, PAGE.format(limit=2), after="") == everything[:2]
    assert sql(chat, PAGE.format(limit=2), after="s1") == everything[2:]
    assert sql(chat, PAGE.format(limit=0), after="") == []
    assert sql(chat, PAGE.format(limit=5), after="ü") == []


def test_sql_page_refuses_a_field_that_is_no_array(chat: Any) -> None:
    chat.Documents.add_documents(collection="chat", data=[{"_id": "s2", "messages": "x"}])
    with pytest.raises(rs_exc.BadRequestException) as exc:
        sql(chat, PAGE.format(limit=10), after="")
    assert "ARRAY_LENGTH expects an array" in error_of(exc)["message"]


def test_sql_count_and_write_time_of_one_session(chat: Any) -> None:
    chat.Documents.add_documents(collection="chat", data=[{"_id": "s2", "messages": [1],
                                                           "written": "t"}])
    query = ('SELECT ARRAY_LENGTH("messages") AS "n", "written" AS "w" FROM "commons"."chat" '
             "WHERE _id = :sid")
    assert sql(chat, query, sid="s1") == [{"n": 3}]
    assert sql(chat, query, sid="s2") == [{"n": 1, "w": "t"}]
    assert sql(chat, query, sid="nobody") == []


def test_sql_many_sessions_in_one_query(chat: Any) -> None:
    chat.Documents.add_documents(collection="chat", data=[{"_id": "s2", "messages": []},
                                                          {"_id": "s3", "other": 1}])
    query = ('SELECT _id AS "s", "messages" AS "r" FROM "commons"."chat" '
             "WHERE _id IN (:a, :b, :c, :d, :e)")
    rows = sql(chat, query, a="s3", b="s1", c="nobody", d="s2", e=7)
    assert rows == [{"s": "s1", "r": [message(i) for i in range(3)]}, {"s": "s2", "r": []},
                    {"s": "s3"}]
    assert sql(chat, 'SELECT _id AS "s", messages AS "r" FROM commons.chat WHERE _id IN (:a)',
               a="s1") == rows[:1]


def test_documents_carry_their_event_time_given_or_stamped_at_ingest(emu: RocksetEmulator,
                                                                     chat: Any) -> None:
    given = "2020-01-02T03:04:05.000006Z"
    chat.Documents.add_documents(collection="chat", data=[{"_id": "old", "_event_time": given}])
    chat.Documents.patch_documents(collection="chat", data=[PatchDocument(
        id="old", patch=[PatchOperation(op="ADD", path="/x", value={"n": 1})])])
    stamped = emu.documents("commons", "chat")["s1"]["_event_time"]
    assert emu.documents("commons", "chat")["old"] == {"_id": "old", "_event_time": given,
                                                       "x": {"n": 1}}
    assert len(stamped) == len(given) and stamped.endswith("Z") and stamped > given
    with pytest.raises(rs_exc.BadRequestException) as exc:
        chat.Documents.add_documents(collection="chat", data=[{"_id": "x", "_event_time": 5}])
    assert "_event_time" in error_of(exc)["message"]


SUMMARIES = (
    'SELECT _id AS "s", ARRAY_LENGTH("messages") AS "n", "written" AS "w", _event_time AS "c" '
    'FROM "commons"."chat" WHERE ARRAY_LENGTH("messages") > 0 {keyset}'
    "ORDER BY COALESCE(\"written\", '') {order}, _id {order} LIMIT {limit}"
)
KEYSET = ("AND (COALESCE(\"written\", '') {op} :k OR (COALESCE(\"written\", '') = :k "
          "AND _id {op} :after)) ")


def summaries(chat: Any, *, newest_first: bool, limit: int,
              position: tuple[str, str] | None = None) -> list[str]:
    order, op = ("DESC", "<") if newest_first else ("ASC", ">")
    keyset = "" if position is None else KEYSET.format(op=op)
    query = SUMMARIES.format(keyset=keyset, order=order, limit=limit)
    values = {} if position is None else {"k": position[0], "after": position[1]}
    return [row["s"] for row in sql(chat, query, **values)]


def test_sql_summaries_are_keyset_pages_by_write_time_then_id(chat: Any) -> None:
    chat.Documents.add_documents(collection="chat", data=[
        {"_id": "a", "messages": [1], "written": "t2",
         "_event_time": "2020-01-01T00:00:00.000000Z"},
        {"_id": "b", "messages": [1, 2], "written": "t2"},
        {"_id": "c", "messages": [1], "written": "t9"},
        {"_id": "d", "messages": []},  # empty: not listed
    ])  # s1 (three messages) has no write time: it sorts as ''
    assert summaries(chat, newest_first=True, limit=10) == ["c", "b", "a", "s1"]
    assert summaries(chat, newest_first=False, limit=10) == ["s1", "a", "b", "c"]
    assert summaries(chat, newest_first=True, limit=2) == ["c", "b"]
    assert summaries(chat, newest_first=True, limit=10, position=("t2", "b")) == ["a", "s1"]
    assert summaries(chat, newest_first=False, limit=1, position=("t2", "a")) == ["b"]
    assert summaries(chat, newest_first=False, limit=10, position=("", "s1")) == ["a", "b", "c"]
    row = sql(chat, SUMMARIES.format(keyset="", order="ASC", limit=2))[1]
    assert row == {"s": "a", "n": 1, "w": "t2", "c": "2020-01-01T00:00:00.000000Z"}
    named = ('SELECT _id AS "s", ARRAY_LENGTH("messages") AS "n", "written" AS "w", '
             '_event_time AS "c" FROM "commons"."chat" WHERE _id IN (:x, :y, :z)')
    assert sql(chat, named, x="d", y="a", z="nobody") == [row, {"s": "d", "n": 0, "c": ANY_TIME}]


class _AnyTime:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other.endswith("Z") and len(other) == 27


ANY_TIME: Any = _AnyTime()


@pytest.mark.parametrize("query", [
    SUMMARIES.format(keyset=KEYSET.format(op=">"), order="DESC", limit=3),  # > with DESC
    SUMMARIES.format(keyset="", order="DESC", limit=3).replace("_id DESC", "_id ASC"),
    SUMMARIES.format(keyset="", order="ASC", limit=3).replace("COALESCE(\"written\"",
                                                              "COALESCE(\"other\""),
])
def test_sql_summaries_refuse_mixed_shapes(chat: Any, query: str) -> None:
    with pytest.raises(rs_exc.BadRequestException) as exc:
        sql(chat, query, k="", after="")
    assert "Unsupported SQL" in error_of(exc)["message"]


@pytest.mark.parametrize("query", [
    PAGE.format(limit=1).replace('ARRAY_LENGTH("messages") > 0', 'ARRAY_LENGTH("other") > 0'),
    PAGE.format(limit=1).replace('"w"', '"n"'),
    PAGE.format(limit=1).replace("ORDER BY _id ", ""),
    PAGE.format(limit=1).replace("> 0", "> 1"),
    PAGE.format(limit=1).replace(":after", "'s0'"),
    'SELECT _id AS "s", messages AS "r" FROM commons.chat WHERE _id IN ()',
    'SELECT _id AS "s", messages AS "r" FROM commons.chat WHERE _id IN (:a, )',
    'SELECT _id AS "s", messages AS "r" FROM commons.chat WHERE _id IN (:a :b)',
    "SELECT _id AS \"s\", messages AS \"r\" FROM commons.chat WHERE _id IN (:a, 's1')",
])
def test_sql_new_shapes_stay_strict(chat: Any, query: str) -> None:
    with pytest.raises(rs_exc.BadRequestException) as exc:
        chat.sql(query, params={"after": "", "a": "s1", "b": "s2"})
    assert error_of(exc)["type"] == "QUERY_ERROR"


def test_sql_many_needs_every_parameter(chat: Any) -> None:
    with pytest.raises(rs_exc.BadRequestException) as exc:
        sql(chat, 'SELECT _id AS "s", messages AS "r" FROM commons.chat WHERE _id IN (:a, :b)',
            a="s1")
    assert "'b'" in error_of(exc)["message"]


def test_sql_parameter_types_are_converted(chat: Any) -> None:
    chat.Documents.add_documents(
        collection="chat",
        data=[{"_id": "s2", "messages": [{"k": 3}, {"k": 2.5}, {"k": True}, {"k": "True"}]}],
    )
    query = (
        "SELECT * FROM UNNEST((SELECT messages FROM commons.chat WHERE _id = :sid)) AS m "
        "WHERE m.k = :k LIMIT 5"
    )
    assert sql(chat, query, sid="s2", k=3) == [{"k": 3}]
    assert sql(chat, query, sid="s2", k=2.5) == [{"k": 2.5}]
    assert sql(chat, query, sid="s2", k=True) == [{"k": True}]
    assert sql(chat, query, sid="s2", k="True") == [{"k": "True"}]


def test_sql_missing_parameter_is_400(chat: Any) -> None:
    with pytest.raises(rs_exc.BadRequestException) as exc:
        sql(chat, UNNEST)
    assert exc.value.status == 400
    error = error_of(exc)
    assert error["type"] == "QUERY_ERROR" and "sid" in error["message"]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM commons.chat",
        "SELECT * FROM commons.chat WHERE _id = :sid",
        UNNEST + " ORDER BY x",
        UNNEST.replace("_id", "name"),
        "SELECT messages FROM commons.chat WHERE _id = 's1'",
        "SELECT 1 FROM commons.chat WHERE _id = :sid",
        "SELECT SLICE(messages, GREATEST(ARRAY_LENGTH(other) - :n + 1, 1)) AS t "
        "FROM commons.chat WHERE _id = :sid",
        "SELECT * FROM UNNEST((SELECT messages FROM commons.chat WHERE _id = :sid)) AS m "
        "WHERE x.id = :sid LIMIT 1",
        "DELETE FROM commons.chat",
        'SELECT "unterminated FROM commons.chat',
        "",
    ],
)
def test_unsupported_sql_is_400_never_empty(chat: Any, query: str) -> None:
    with pytest.raises(rs_exc.BadRequestException) as exc:
        chat.sql(query, params={"sid": "s1", "n": 1})
    assert exc.value.status == 400
    assert error_of(exc)["type"] == "QUERY_ERROR"


def test_sql_unknown_collection_is_400_query_error(chat: Any) -> None:
    with pytest.raises(rs_exc.BadRequestException) as exc:
        sql(chat, "SELECT COUNT(*) AS n FROM commons.nope")
    assert error_of(exc) | {"trace_id": "", "error_id": ""} == {
        "message": "Collection 'nope' not found in workspace 'commons'",
        "type": "QUERY_ERROR",
        "line": None,
        "column": None,
        "trace_id": "",
        "error_id": "",
        "query_id": None,
    }


def test_query_response_never_sends_null(emu: RocksetEmulator, chat: Any) -> None:
    body = {"sql": {"query": "SELECT COUNT(*) AS n FROM commons.chat"}}
    status, response = raw(emu, "POST", "/v1/orgs/self/queries", json.dumps(body).encode())
    assert status == 200
    assert None not in response.values()
    assert response["results"] == [{"n": 1}] and response["collections"] == ["commons.chat"]
    assert response["column_fields"] == [{"name": "n", "type": ""}]


# ---- auth ----------------------------------------------------------------------------------


def test_auth_is_required(emu: RocksetEmulator) -> None:
    for header in ("", "apikey wrong", "Bearer test-key", "apikey"):
        headers = {"Authorization": header}
        status, error = raw(emu, "GET", "/v1/orgs/self/collections", headers=headers)
        assert status == 401 and error["type"] == "AUTHEXCEPTION" and set(error) == ERROR_KEYS
    assert raw(emu, "GET", "/v1/orgs/self/collections")[0] == 200
    with pytest.raises(rs_exc.UnauthorizedException) as exc:
        emu.client(api_key="wrong").Collections.list()
    assert exc.value.status == 401


# ---- visibility and the commit fence -----------------------------------------------------


def test_visibility_delay_and_fence(emu: RocksetEmulator, chat: Any) -> None:
    emu.set_visibility_delay(0.3)
    written = chat.Documents.patch_documents(
        collection="chat",
        data=[{"id": "s1", "patch": [{"op": "ADD", "path": "/messages/-", "value": message(3)}]}],
    )
    offset = written.last_offset
    assert len(emu.documents("commons", "chat")["s1"]["messages"]) == 4  # stored at once
    assert len(sql(chat, UNNEST, sid="s1")) == 3  # not yet visible

    def fence() -> Any:
        return chat.Collections.get_collection_offsets(collection="chat", name=[offset])

    first = fence()
    assert first.data.passed is False and first.data.fence == offset
    assert seq(first.offsets.commit) < seq(offset)
    waited = wait_until(lambda: bool(fence().data.passed))
    assert waited > 0.1
    assert fence().offsets.commit == offset
    assert len(sql(chat, UNNEST, sid="s1")) == 4


def test_visibility_applies_in_offset_order(emu: RocksetEmulator, chat: Any) -> None:
    emu.set_visibility_delay(0.2)
    chat.Documents.add_documents(collection="chat", data=[{"_id": "s2", "messages": [1]}])
    chat.Documents.delete_documents(collection="chat", data=[{"id": "s1"}])
    query = "SELECT COUNT(*) AS n FROM commons.chat"
    assert sql(chat, query) == [{"n": 1}]
    wait_until(lambda: sql(chat, query) == [{"n": 1}] and sql(chat, UNNEST, sid="s1") == [])
    assert sql(chat, UNNEST.replace(":sid", ":x"), x="s2") == [{"unnest": 1}]


# ---- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exception", "type_"),
    [
        (429, rs_exc.BadRequestException, "RATELIMITEXCEEDED"),
        (503, rs_exc.ApiException, "SERVICEUNAVAILABLE"),
        (500, rs_exc.ApiException, "INTERNALERROR"),
        (401, rs_exc.UnauthorizedException, "AUTHEXCEPTION"),
        (403, rs_exc.ForbiddenException, "FORBIDDEN"),
    ],
)
def test_fail_next(
    emu: RocksetEmulator, rs: Any, status: int, exception: type[Exception], type_: str
) -> None:
    rs.Collections.create_s3_collection(name="chat")
    emu.fail_next(2, status=status)
    for _ in range(2):
        with pytest.raises(exception) as exc:
            rs.Documents.add_documents(collection="chat", data=[{"_id": "a"}])
        assert exc.value.status == status  # type: ignore[attr-defined]
        assert error_of(exc)["type"] == type_
    assert emu.documents("commons", "chat") == {}
    rs.Documents.add_documents(collection="chat", data=[{"_id": "a"}])
    assert list(emu.documents("commons", "chat")) == ["a"]


@pytest.mark.parametrize("after_apply", [False, True])
def test_drop_connection_before_or_after_apply(
    emu: RocksetEmulator, chat: Any, after_apply: bool
) -> None:
    emu.drop_next(1, after_apply=after_apply)
    chat.Collections.get(collection="chat")  # reads are never dropped
    with pytest.raises(urllib3.exceptions.ProtocolError, match="without response"):
        chat.Documents.patch_documents(
            collection="chat",
            data=[{"id": "s1", "patch": [{"op": "ADD", "path": "/messages/-", "value": {}}]}],
        )
    messages = emu.documents("commons", "chat")["s1"]["messages"]
    assert len(messages) == (4 if after_apply else 3)
    # The client recovers on a fresh connection.
    chat.Documents.add_documents(collection="chat", data=[{"_id": "s2"}])
    assert "s2" in emu.documents("commons", "chat")


def test_dropped_delete_is_retried_by_urllib3(emu: RocksetEmulator, chat: Any) -> None:
    """urllib3 retries idempotent methods (DELETE) on a dropped connection, POST/PATCH not."""
    emu.reset_request_count()
    emu.drop_next(1)
    response = chat.Documents.delete_documents(collection="chat", data=[{"id": "s1"}])
    assert [s.status for s in response.data] == ["DELETED"]
    assert emu.requests == [("DELETE", f"{WS_PATH}/chat/docs")] * 2


def test_latency(emu: RocksetEmulator, rs: Any) -> None:
    emu.set_latency(0.15)
    started = time.monotonic()
    rs.Collections.list()
    assert time.monotonic() - started >= 0.15
    emu.set_latency(30)
    emu.set_latency(0)
    rs.Collections.list(_request_timeout=10)  # 30 s of latency would time this out


def test_request_log_and_reset(emu: RocksetEmulator, chat: Any) -> None:
    assert emu.request_count == 2
    assert emu.requests == [("POST", WS_PATH), ("POST", f"{WS_PATH}/chat/docs")]
    emu.reset_request_count()
    assert emu.request_count == 0
    emu.set_visibility_delay(5)
    emu.fail_next(3)
    emu.reset()
    assert emu.request_count == 0
    assert chat.Collections.list().data == []
    chat.Collections.create_s3_collection(name="chat")
    chat.Documents.add_documents(collection="chat", data=[{"_id": "s1", "messages": [1]}])
    assert sql(chat, UNNEST, sid="s1") == [{"unnest": 1}]  # visibility delay back to 0


def test_before_next_acts_once_on_the_matching_request(emu: RocksetEmulator, chat: Any) -> None:
    seen: list[int] = []
    emu.before_next("POST", "/chat/docs", lambda: seen.append(emu.request_count))
    emu.before_next("GET", "/collections/chat", lambda: emu.fail_next(1, status=500))
    emu.reset_request_count()
    chat.Documents.patch_documents(collection="chat", data=[{"id": "s1", "patch": []}])
    assert seen == []  # a PATCH on the same path is not a POST
    with pytest.raises(rs_exc.ApiException) as failed:  # the hook's fault hits its own request
        chat.Collections.get(collection="chat")
    assert failed.value.status == 500
    chat.Collections.get(collection="chat")  # once only
    chat.Documents.add_documents(collection="chat", data=[{"_id": "s2"}])
    chat.Documents.add_documents(collection="chat", data=[{"_id": "s3"}])
    assert seen == [4]  # logged before the action ran, once


def test_in_flight_and_wait_idle(emu: RocksetEmulator, chat: Any) -> None:
    emu.set_latency(1.0)
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        chat.Documents.add_documents(collection="chat", data=[{"_id": "late"}],
                                     _request_timeout=0.05)
    assert emu.in_flight == 1  # the client gave up; the server is still sleeping
    assert "late" not in emu.documents("commons", "chat")
    emu.wait_idle()
    assert emu.in_flight == 0
    assert "late" in emu.documents("commons", "chat")  # applied after all
    emu.set_latency(0.5)
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):  # a POST: urllib3 sends it once
        chat.Documents.add_documents(collection="chat", data=[{"_id": "later"}],
                                     _request_timeout=0.05)
    with pytest.raises(TimeoutError, match="1 request"):
        emu.wait_idle(timeout=0.01)
    emu.wait_idle()


def test_open_connections_counts_kept_alive_connections(emu: RocksetEmulator) -> None:
    assert emu.open_connections == 0
    pool = urllib3.PoolManager()
    headers = {"Authorization": f"apikey {emu.api_key}"}
    assert pool.request("GET", emu.url + "/v1/orgs/self/collections", headers=headers).status == 200
    assert pool.request("GET", emu.url + "/v1/orgs/self/collections", headers=headers).status == 200
    assert emu.open_connections == 1  # kept alive, and reused by the second request
    pool.clear()
    deadline = time.monotonic() + 10
    while emu.open_connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert emu.open_connections == 0


# ---- concurrency, persistence, CLI -------------------------------------------------------


def test_concurrent_clients(emu: RocksetEmulator, chat: Any) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            rs = emu.client()
            for i in range(10):
                op = {"op": "ADD", "path": "/messages/-", "value": {"worker": n, "i": i}}
                rs.Documents.patch_documents(collection="chat", data=[{"id": "s1", "patch": [op]}])
                assert sql(rs, "SELECT COUNT(*) AS n FROM commons.chat") == [{"n": 1}]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    messages = emu.documents("commons", "chat")["s1"]["messages"][3:]
    assert sorted((m["worker"], m["i"]) for m in messages) == [
        (n, i) for n in range(8) for i in range(10)
    ]


def test_persistence_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with RocksetEmulator(persist_path=path, ready_delay=5) as emu:
        rs = emu.client()
        rs.Collections.create_s3_collection(name="chat", workspace="ws", description="kept")
    assert path.exists()
    with RocksetEmulator(persist_path=path) as emu:
        rs = emu.client()
        collection = rs.Collections.get(collection="chat", workspace="ws").data
        assert collection.status == "READY" and collection.description == "kept"
        rs.Documents.add_documents(
            collection="chat", workspace="ws", data=[{"_id": "s1", "messages": [1, 2]}]
        )
    with RocksetEmulator(persist_path=path) as emu:
        rs = emu.client()
        query = "SELECT ARRAY_LENGTH(messages) AS n FROM ws.chat WHERE _id = :sid"
        assert sql(rs, query, sid="s1") == [{"n": 2}]
        offset = rs.Documents.add_documents(collection="chat", workspace="ws", data=[{}])
        assert offset.last_offset == "f1:0:0:0:2"  # offsets continue after a restart


def test_nothing_is_persisted_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with RocksetEmulator() as emu:
        emu.client().Collections.create_s3_collection(name="chat")
    assert list(tmp_path.iterdir()) == []


# The installed console script sits beside the interpreter, in the same bin directory.
_COMMANDS = {"module": [sys.executable, "-m", "rockset_emulator"],
             "script": [str(Path(sys.executable).with_name("rockset-emulator"))]}


@pytest.fixture(params=sorted(_COMMANDS))
def cli_process(request: pytest.FixtureRequest) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    with subprocess.Popen(
        [*_COMMANDS[request.param], "--port", "0", "--api-key", "k"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()


def test_command_line(cli_process: subprocess.Popen[str]) -> None:
    assert cli_process.stdout is not None and cli_process.stderr is not None
    url = cli_process.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), cli_process.stderr.read()
    request = urllib.request.Request(
        url + "/v1/orgs/self/collections", headers={"Authorization": "apikey k"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.loads(response.read()) == {"data": []}
    cli_process.send_signal(signal.SIGINT)
    returncode = cli_process.wait(timeout=5)
    stderr = cli_process.stderr.read()
    assert returncode == 0, stderr
    assert "Traceback" not in stderr


# ---- langchain_community's RocksetChatMessageHistory, unchanged -------------------------


def test_langchain_history_round_trip(emu: RocksetEmulator) -> None:
    from langchain_community.chat_message_histories import RocksetChatMessageHistory
    from langchain_core.messages import AIMessage, HumanMessage

    history = RocksetChatMessageHistory(session_id="s1", client=emu.client(), collection="lc")
    history.add_user_message("hello")
    history.add_ai_message("hi there")
    assert history.messages == [HumanMessage("hello"), AIMessage("hi there")]

    again = RocksetChatMessageHistory(session_id="s1", client=emu.client(), collection="lc")
    assert [m.content for m in again.messages] == ["hello", "hi there"]
    other = RocksetChatMessageHistory(session_id="s2", client=emu.client(), collection="lc")
    assert other.messages == []

    history.clear()
    assert history.messages == []
    cleared = emu.documents("commons", "lc")["s1"]
    assert cleared.pop("_event_time")
    assert cleared == {"_id": "s1", "messages": []}


def test_langchain_history_sync_with_visibility_delay() -> None:
    from langchain_community.chat_message_histories import RocksetChatMessageHistory
    from langchain_core.messages import HumanMessage

    with RocksetEmulator(ready_delay=0.1, visibility_delay=0.2) as emu:
        # (commons: langchain's class polls Collections.get without its workspace argument)
        history = RocksetChatMessageHistory(
            session_id="s1", client=emu.client(), collection="lc", sync=True
        )
        started = time.monotonic()
        history.add_message(HumanMessage("hello"))
        assert time.monotonic() - started >= 0.15  # it waited for visibility
        reader = RocksetChatMessageHistory(session_id="s1", client=emu.client(), collection="lc")
        assert [m.content for m in reader.messages] == ["hello"]
        history.clear()
        assert reader.messages == []

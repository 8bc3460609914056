"""MariaDB specifics: long and 4-byte UTF-8 session ids, exact ids, utf8mb4, names quoted."""

from __future__ import annotations

import asyncio

import pytest
from chathistory_sqlalchemy import SQLAlchemyBackend
from langchain_core.messages import HumanMessage, message_to_dict
from sqlalchemy import Engine, text

from chathistory import ConfigError
from chathistory.testing import HOSTILE_SESSION_IDS, numbered_records


@pytest.fixture
def backend(mariadb_backend: SQLAlchemyBackend) -> SQLAlchemyBackend:
    return mariadb_backend


LONG_IDS = [
    "🧵" * 300,                                   # 300 characters, 1,200 bytes
    "u" * 254 + "😀" + "𝄞𠜎" * 200,               # past 255 characters, 4-byte UTF-8
    "x" * 5000,
    "same-prefix-" + "y" * 300 + "-a",
    "same-prefix-" + "y" * 300 + "-b",
]


def test_long_and_four_byte_session_ids_round_trip(backend: SQLAlchemyBackend) -> None:
    for number, session in enumerate(LONG_IDS):
        backend.append(session, [message_to_dict(HumanMessage(f"{number}: 😀 𝄞 𠜎 \U0010ffff"))])
    for number, session in enumerate(LONG_IDS):
        assert [r["data"]["content"] for r in backend.fetch(session)] == [
            f"{number}: 😀 𝄞 𠜎 \U0010ffff"]
        assert len(backend.fetch(session, limit=1)) == 1
    backend.clear(LONG_IDS[3])
    assert backend.fetch(LONG_IDS[3]) == []
    assert len(backend.fetch(LONG_IDS[4])) == 1


def test_session_ids_that_differ_only_in_case_or_trailing_space_are_distinct(
    backend: SQLAlchemyBackend
) -> None:
    sessions = ["Session", "session", "SESSION", "s", "s ", "ß", "ss", "é", "e\u0301"]
    for session in sessions:
        backend.append(session, numbered_records(1, prefix=f"{session!r}:"))
    for session in sessions:
        assert [r["data"]["content"] for r in backend.fetch(session)] == [f"{session!r}:0"]


def test_the_table_is_utf8mb4_and_the_session_id_is_only_ever_bound(
    backend: SQLAlchemyBackend, mysql_admin: Engine, mysql_table: str
) -> None:
    for session in HOSTILE_SESSION_IDS:
        backend.append(session, numbered_records(1))
    with mysql_admin.connect() as connection:
        create = connection.execute(text(f"SHOW CREATE TABLE `{mysql_table}`")).one()[1]
        tables = {row[0] for row in connection.execute(text("SHOW TABLES"))}
    assert "CHARSET=utf8mb4" in create and "message` longtext" in create
    assert mysql_table in tables  # "DROP TABLE message_store" stayed a value
    assert asyncio.run(backend.afetch(HOSTILE_SESSION_IDS[0])) == numbered_records(1)


@pytest.mark.parametrize("table", ["a`b", "t; DROP TABLE x", "名前", "x" * 49, "1abc", ""])
def test_table_names_are_checked_before_any_sql(mysql_url: str, table: str) -> None:
    with pytest.raises(ConfigError, match="table"):
        SQLAlchemyBackend.from_options(url=mysql_url, table=table)


def test_a_table_of_another_layout_is_refused(mysql_url: str, mysql_table: str) -> None:
    SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table,
                                   layout="langchain_community").create_collection()
    mismatched = SQLAlchemyBackend.from_options(url=mysql_url, table=mysql_table)
    with pytest.raises(ConfigError, match="lacks session_hash"):
        mismatched.create_collection()
    mismatched.close()

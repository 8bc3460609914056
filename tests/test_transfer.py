"""Copy, export and import: complete, in order, and safe to run twice."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chathistory.backends.memory import MemoryBackend
from chathistory.backends.sqlite import SqliteBackend
from chathistory.errors import (
    BackendUnavailableError,
    CapabilityMissingError,
    ChatHistoryError,
    RecordError,
)
from chathistory.testing.samples import numbered_records
from chathistory.transfer import (
    copy_sessions,
    count_records,
    export_sessions,
    import_sessions,
    list_session_ids,
)


def filled(sessions: int = 7, per_session: int = 5) -> MemoryBackend:
    backend = MemoryBackend()
    for number in range(sessions):
        backend.append(f"s{number}", numbered_records(per_session + number, prefix=f"s{number}-"))
    return backend


def contents(backend: Any, session_id: str) -> list[str]:
    return [record["data"]["content"] for record in backend.fetch(session_id)]


def test_a_copy_moves_every_session_whole_and_in_order() -> None:
    source, target = filled(), MemoryBackend()
    seen: list[tuple[int, int]] = []
    report = copy_sessions(source, target, chunk=3, progress=lambda s, m: seen.append((s, m)))
    assert report.sessions == 7 and report.messages == sum(5 + n for n in range(7))
    for number in range(7):
        assert target.fetch(f"s{number}") == source.fetch(f"s{number}")
    assert [sessions for sessions, _ in seen] == [3, 3, 1]
    assert sum(messages for _, messages in seen) == report.messages
    # Records as text on both sides: per chunk, one read of the source's texts, one of
    # what the target holds, and one write of texts; nothing is decoded on the way.
    assert source.calls["fetch_many_text"] == 3 and source.calls["fetch_many"] == 0
    assert target.calls["fetch_many"] == 3
    assert target.calls["append_many_text"] == 3 and target.calls["append_many"] == 0


class RecordsOnly(MemoryBackend):
    """A bulk backend that cannot read or write records as text."""

    fetch_many_text = append_many_text = None  # type: ignore[assignment]


@pytest.mark.parametrize("source_text", [True, False], ids=["text-source", "records-source"])
def test_a_copy_where_one_side_lacks_text_goes_through_records(source_text: bool) -> None:
    source = filled() if source_text else RecordsOnly()
    if not source_text:
        for number in range(7):
            source.append(f"s{number}", filled().fetch(f"s{number}"))
    target = RecordsOnly() if source_text else MemoryBackend()
    target.append("s3", source.fetch("s3")[:2])
    report = copy_sessions(source, target, chunk=3)
    for number in range(7):
        assert target.fetch(f"s{number}") == source.fetch(f"s{number}")
    assert report.messages == sum(5 + n for n in range(7)) - 2 and report.complete == 0
    assert source.calls["fetch_many"] == 3 and target.calls["append_many"] == 3


def test_running_a_copy_twice_writes_nothing_the_second_time() -> None:
    source, target = filled(), MemoryBackend()
    copy_sessions(source, target)
    again = copy_sessions(source, target)
    assert again.messages == 0 and again.complete == 7 and again.mismatched == []
    assert count_records(target, [f"s{n}" for n in range(7)]) == {
        f"s{n}": 5 + n for n in range(7)}


def test_a_read_failing_midway_stops_the_copy_after_whole_chunks_and_a_rerun_ends_it(
) -> None:
    source, target = filled(), MemoryBackend()
    original = source.fetch_many_text
    reads: list[list[str]] = []

    def failing_second_read(session_ids: Sequence[str]) -> dict[str, list[str]]:
        reads.append(list(session_ids))
        if len(reads) == 2:
            raise BackendUnavailableError("the source went away")
        return original(session_ids)

    source.fetch_many_text = failing_second_read  # type: ignore[method-assign]
    with pytest.raises(BackendUnavailableError, match="went away"):
        copy_sessions(source, target, chunk=3)
    # The first chunk, read before the failure, was written whole; nothing after it.
    assert target.sessions() == ["s0", "s1", "s2"]
    source.fetch_many_text = original  # type: ignore[method-assign]
    report = copy_sessions(source, target, chunk=3)
    assert report.complete == 3 and report.mismatched == []
    for number in range(7):
        assert target.fetch(f"s{number}") == source.fetch(f"s{number}")


def test_an_interrupted_copy_is_finished_without_duplicates() -> None:
    source, target = filled(), MemoryBackend()
    copy_sessions(source, target, ["s0", "s1"])          # the chunks done before a crash
    target.append("s2", source.fetch("s2")[:3])           # a session the source grew since
    report = copy_sessions(source, target)
    assert report.complete == 2 and report.mismatched == []
    for number in range(7):
        assert target.fetch(f"s{number}") == source.fetch(f"s{number}")


def test_a_session_the_target_holds_differently_is_left_alone_and_reported() -> None:
    source, target = filled(3), MemoryBackend()
    target.append("s1", numbered_records(2, prefix="other-"))
    report = copy_sessions(source, target)
    assert report.mismatched == ["s1"]
    assert contents(target, "s1") == ["other-0", "other-1"]
    assert target.fetch("s0") == source.fetch("s0")


def test_backends_without_bulk_methods_are_copied_one_session_at_a_time(tmp_path: Any
                                                                        ) -> None:
    source = filled(4)
    target = SqliteBackend(SqliteBackend.Config(path=str(tmp_path / "t.sqlite3")))
    report = copy_sessions(source, target, [f"s{n}" for n in range(4)])
    assert report.messages == 5 + 6 + 7 + 8
    assert target.fetch("s3") == source.fetch("s3")
    back = MemoryBackend()
    copy_sessions(target, back, ["s3", "s0"])
    assert back.fetch("s3") == source.fetch("s3")
    target.close()


class FourMethodsOnly(MemoryBackend):
    list_sessions = fetch_many = None  # type: ignore[assignment]


def test_a_copy_of_every_session_needs_a_source_that_can_list_them() -> None:
    with pytest.raises(CapabilityMissingError,
                       match=r"^backend 'memory' cannot list its sessions; name the sessions"):
        copy_sessions(FourMethodsOnly(), MemoryBackend())


def test_export_then_import_round_trips_and_import_twice_adds_nothing() -> None:
    source, out = filled(), io.StringIO()
    lines = export_sessions(source, out, chunk=2).lines
    assert lines == sum(5 + n for n in range(7))
    text = out.getvalue()
    target = MemoryBackend()
    first = import_sessions(target, io.StringIO(text), chunk=3)
    assert first.sessions == 7 and first.messages == lines
    second = import_sessions(target, io.StringIO(text))
    assert second.messages == 0 and second.complete == 7
    for number in range(7):
        assert target.fetch(f"s{number}") == source.fetch(f"s{number}")


def line(session_id: object, record: object) -> str:
    return json.dumps({"session_id": session_id, "record": record})


GOOD = {"type": "human", "data": {"content": "x"}}


@pytest.mark.parametrize(("bad", "error"), [
    ("not json", "line 3: not valid JSON (Expecting value: line 1 column 1 (char 0))"),
    ("[1, 2]", 'line 3: expected {"session_id": "...", "record": {...}}, found no object'),
    ('{"session": "c", "record": {}}',
     'line 3: expected {"session_id": "...", "record": {...}}, found keys \'session\', '
     "'record'"),
    (line(1, GOOD), "line 3: session_id must be a str, not int"),
    (line("", GOOD), "line 3: session_id must not be empty"),
    (line("c", [1]), "line 3: the record must be a JSON object, not list"),
    (line("c", {"type": "bogus", "data": {"content": "x"}}),
     "line 3: the record is not a LangChain message: unknown message type 'bogus'"),
    (line("c", {"type": "human"}),
     "line 3: the record is not a LangChain message: missing key 'data'"),
    (line("c", {"type": "human", "data": {"content": 5}}),
     "line 3: the record is not a LangChain message: the data of a 'human' message is "
     "refused (content: Input should be a valid string)"),
    ('{"session_id": "c", "record": {"type": "human", "data": {"content": "\\ud800"}}}',
     "line 3: message cannot be stored as JSON"),
    (line("a", GOOD), "line 3: session 'a' appears again after other sessions"),
    # Refused by no check and by no store's codec until the write, nothing written yet.
    ('{"session_id": "c\\udcff", "record": {"type": "human", "data": {"content": "x"}}}',
     "line 3: the session_id holds a lone surrogate"),
    ('{"session_id": "c", "summary": {"owner": null, "title": "\\udcff", "metadata": {}, '
     '"created_at": "2026-01-01T00:00:00+00:00", "updated_at": "2026-01-01T00:00:00+00:00"}}',
     "line 3: the summary holds a lone surrogate"),
])
@pytest.mark.parametrize("seekable", [True, False], ids=["file", "stream"])
def test_an_import_checks_every_line_first_and_a_bad_one_writes_nothing(
        tmp_path: Path, bad: str, error: str, seekable: bool) -> None:
    good = [line("a", GOOD), line("b", GOOD)]
    path = tmp_path / "chat.sqlite3"
    target = SqliteBackend(SqliteBackend.Config(path=str(path)))
    text = "\n".join([*good, bad, *good[1:] * 600]) + "\n"
    source = io.StringIO(text) if seekable else iter(text.splitlines(keepends=True))
    with pytest.raises(RecordError) as caught:
        import_sessions(target, source, chunk=1)
    assert str(caught.value).startswith(error)
    target.close()
    assert not path.exists(), "a refused import created the database"


def test_an_import_from_a_file_rereads_it_after_checking_it(tmp_path: Path) -> None:
    exported = tmp_path / "all.jsonl"
    with exported.open("w", encoding="utf-8") as out:
        export_sessions(filled(), out)
    target = MemoryBackend()
    with exported.open(encoding="utf-8") as source:
        report = import_sessions(target, source)
    assert report.messages == sum(5 + n for n in range(7))
    assert target.fetch("s6") == filled().fetch("s6")


def test_by_default_an_import_restores_and_with_append_it_appends() -> None:
    target = MemoryBackend()
    target.append("a", [GOOD])
    target.append("b", [{"type": "ai", "data": {"content": "other"}}])
    text = "\n".join([line("a", GOOD), line("a", GOOD), line("b", GOOD), line("c", GOOD)])
    restored = import_sessions(target, io.StringIO(text))
    assert (restored.sessions, restored.messages, restored.mismatched) == (3, 2, ["b"])
    assert len(target.fetch("a")) == 2 and len(target.fetch("b")) == 1
    appended = import_sessions(target, io.StringIO(text), append=True)
    assert (appended.sessions, appended.messages, appended.mismatched) == (3, 4, [])
    assert [len(target.fetch(s)) for s in "abc"] == [4, 2, 2]


def test_an_export_names_the_session_and_position_of_a_record_that_is_no_message() -> None:
    source = MemoryBackend()
    source.append("ada", [GOOD, GOOD, {"type": "bogus", "data": {"content": "?"}}])
    with pytest.raises(RecordError) as caught:
        export_sessions(source, io.StringIO())
    assert str(caught.value) == ("session 'ada': record 2 cannot be read as a message: "
                                 "unknown message type 'bogus'")


def test_an_export_of_named_sessions_reports_those_that_hold_nothing() -> None:
    out = io.StringIO()
    report = export_sessions(filled(2), out, ["s1", "nobody", "s0", "zed"])
    assert report.missing == ["nobody", "zed"]
    assert report.lines == 5 + 6 and report.summaries == 2
    assert len(out.getvalue().splitlines()) == 5 + 6 + 2


class IgnoresAfter(MemoryBackend):
    def list_sessions(self, *, after: str | None = None, limit: int = 100) -> list[Any]:
        return super().list_sessions(limit=limit)


def test_a_listing_that_ignores_after_is_an_error_not_an_endless_loop() -> None:
    backend = IgnoresAfter()
    for number in range(3):
        backend.append(f"s{number}", numbered_records(1))
    with pytest.raises(ChatHistoryError, match="does not honour `after`"):
        list_session_ids(backend, page=2)


class ListsBackwards(MemoryBackend):
    """Pages in descending order: each starts past `after`, yet paging never ends."""

    def list_sessions(self, *, after: str | None = None, limit: int = 100) -> list[Any]:
        return [*reversed(super().list_sessions(after=after, limit=limit + 1))]


def test_a_listing_out_of_id_order_is_an_error_not_an_endless_loop() -> None:
    backend = ListsBackwards()
    for number in range(5):
        backend.append(f"s{number}", numbered_records(1))
    with pytest.raises(ChatHistoryError, match="pages are not in id order"):
        list_session_ids(backend, page=2)


def test_an_export_keeps_one_record_per_line_whatever_whitespace_the_store_kept(
        tmp_path: Path) -> None:
    source = SqliteBackend(SqliteBackend.Config(path=str(tmp_path / "s.sqlite3")))
    target = MemoryBackend()
    source.create_collection()
    record = numbered_records(1)[0]
    # sqlite keeps the text it is given: here pretty-printed by someone's own code.
    source.append_many_text({"s": [json.dumps(record, indent=2), json.dumps(record)]})
    out = io.StringIO()
    assert export_sessions(source, out).lines == 2
    assert len(out.getvalue().splitlines()) == 1 + 2  # its summary, its records
    import_sessions(target, io.StringIO(out.getvalue()))
    assert target.fetch("s") == [record, record]


# -- the session catalog travels with the records ------------------------------------------

def described(base: datetime) -> MemoryBackend:
    """Three sessions: an old one of ada's (40 days), a fresh one of hers, one of bob's."""
    from chathistory.catalog import SessionSummary

    source = filled(3, 2)
    source.restore_summaries([SessionSummary(
        "s0", "ada", "Old plans", {"plan": "pro"}, base - timedelta(days=50),
        base - timedelta(days=40), 0)])
    source.update_session("s1", owner="ada", title="Fresh")
    source.update_session("s2", owner="bob", metadata={"n": 1})
    return source


def test_a_copy_carries_owners_titles_metadata_and_both_times(tmp_path: Path) -> None:
    base = datetime.now(UTC)
    source = described(base)
    target = SqliteBackend(SqliteBackend.Config(path=str(tmp_path / "t.sqlite3")))
    report = copy_sessions(source, target, chunk=2)
    assert report.summaries == 3 and report.summaries_dropped == 0
    expected = source.session_summaries(["s0", "s1", "s2"])
    copied = target.session_summaries(["s0", "s1", "s2"])
    for session_id, summary in expected.items():
        got = copied[session_id]
        assert (got.owner, got.title, got.metadata, got.messages) == (
            summary.owner, summary.title, summary.metadata, summary.messages)
        assert abs(got.updated_at - summary.updated_at) < timedelta(milliseconds=1)
        assert abs(got.created_at - summary.created_at) < timedelta(milliseconds=1)
    # A prune after the copy sees the source's age, not the day of the copy.
    assert target.delete_sessions_before(base - timedelta(days=30)) == 1
    assert target.fetch("s0") == [] and len(target.fetch("s1")) == 3
    again = copy_sessions(source, target, ["s1", "s2"])  # a rerun changes nothing
    assert again.messages == 0 and target.session_summaries(["s1"])["s1"] == copied["s1"]
    target.close()


def test_a_copy_to_a_backend_without_a_catalog_says_what_it_dropped() -> None:
    class Plain(MemoryBackend):
        restore_summaries = None  # type: ignore[assignment]

    report = copy_sessions(described(datetime.now(UTC)), Plain())
    assert (report.summaries, report.summaries_dropped) == (0, 3)


def test_export_writes_each_summary_before_its_records_and_import_restores_it(
        tmp_path: Path) -> None:
    base = datetime.now(UTC)
    source = described(base)
    out = io.StringIO()
    export_sessions(source, out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0] == {"session_id": "s0", "summary": {
        "owner": "ada", "title": "Old plans", "metadata": {"plan": "pro"},
        "created_at": (base - timedelta(days=50)).isoformat(),
        "updated_at": (base - timedelta(days=40)).isoformat()}}
    assert [set(line) for line in lines[1:3]] == [{"session_id", "record"}] * 2
    target = SqliteBackend(SqliteBackend.Config(path=str(tmp_path / "t.sqlite3")))
    report = import_sessions(target, io.StringIO(out.getvalue()))
    assert report.summaries == 3
    summary = target.session_summaries(["s0"])["s0"]
    assert (summary.owner, summary.title, summary.messages) == ("ada", "Old plans", 2)
    assert abs(summary.updated_at - (base - timedelta(days=40))) < timedelta(milliseconds=1)
    assert import_sessions(target, io.StringIO(out.getvalue())).messages == 0
    target.close()


@pytest.mark.parametrize(("line", "error"), [
    ('{"session_id": "s", "summary": []}', "line 1: the summary must be a JSON object"),
    # It said "KeyError('created_at') is missing or wrong".
    ('{"session_id": "s", "summary": {"owner": "a"}}',
     "^line 1: not a session summary: it has no 'created_at'$"),
    ('{"session_id": "s", "summary": {"created_at": 5, "updated_at": 5}}',
     "^line 1: not a session summary: fromisoformat: argument must be str$"),
    ('{"session_id": "s", "summary": {"created_at": "monday", "updated_at": "monday"}}',
     "^line 1: not a session summary: Invalid isoformat string: 'monday'$"),
    ('{"session_id": "s", "summary": {"created_at": "2026-01-01T00:00:00", '
     '"updated_at": "2026-01-01T00:00:00"}}', "line 1: .*time zone"),
])
def test_a_bad_summary_line_is_refused_and_nothing_is_written(line: str, error: str) -> None:
    target = MemoryBackend()
    with pytest.raises(RecordError, match=error):
        import_sessions(target, io.StringIO(line + "\n"))
    assert target.sessions() == []


def test_a_summary_after_its_records_is_refused() -> None:
    record = json.dumps({"session_id": "s", "record": numbered_records(1)[0]})
    summary = json.dumps({"session_id": "s", "summary": {
        "created_at": "2026-01-01T00:00:00+00:00", "updated_at": "2026-01-01T00:00:00+00:00"}})
    with pytest.raises(RecordError, match="line 2: a session's summary comes once, before"):
        import_sessions(MemoryBackend(), io.StringIO(f"{record}\n{summary}\n"))

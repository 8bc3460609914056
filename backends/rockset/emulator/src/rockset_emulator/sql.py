"""The few SQL statement shapes the emulator answers, and nothing else.

A tokenizer turns the query into tokens; each supported shape is a template of
tokens and typed slots (``{table}``, ``{ident:field}``, ``{param:session}``...),
with optional ``[...]`` groups. A statement that matches no template is refused
with a QUERY_ERROR naming where matching stopped: never a silent empty result.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import query_error

DEFAULT_WORKSPACE = "commons"

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|--[^\n]*|/\*.*?\*/)
    |(?P<ident>"(?:[^"]|"")*")
    |(?P<string>'(?:[^']|'')*')
    |(?P<unterminated>["'])
    |(?P<param>:[A-Za-z_][A-Za-z0-9_]*)
    |(?P<number>[0-9]+(?:\.[0-9]+)?)
    |(?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    |(?P<slot>\{[a-z_]+(?::[a-z_0-9]+)?\})
    |(?P<punct><>|<=|>=|!=|\|\||::|\S)
    """,
    re.VERBOSE | re.DOTALL,
)

# Bare words that are never identifiers (they must be double-quoted to be used as names).
# fmt: off
_RESERVED = frozenset(
    {
        "SELECT", "FROM", "WHERE", "AS", "LIMIT", "OFFSET", "UNNEST", "AND", "OR", "NOT",
        "ORDER", "BY", "GROUP", "HAVING", "JOIN", "ON", "UNION", "CROSS", "INNER", "LEFT",
        "RIGHT", "FULL", "OUTER", "WITH", "IN", "IS", "NULL", "LIKE", "DISTINCT", "CASE",
        "WHEN", "THEN", "ELSE", "END", "TRUE", "FALSE",
    }
)
# fmt: on


@dataclass(frozen=True)
class Token:
    kind: str  # space is dropped; ident, string, param, number, word, slot, punct
    text: str  # unquoted identifier / string, parameter name without ':', or the raw text
    pos: int


def tokenize(sql: str, *, template: bool = False) -> list[Token]:
    tokens: list[Token] = []
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup
        raw = match.group()
        assert kind is not None
        if kind == "space":
            continue
        if kind == "unterminated":
            raise query_error(f"Unterminated quoted text at position {match.start()} of the query")
        if kind == "slot" and not template:
            kind = "punct"  # '{' is just an unexpected character in a query
            raw = "{"
        text = raw
        if kind == "ident":
            text = raw[1:-1].replace('""', '"')
        elif kind == "string":
            text = raw[1:-1].replace("''", "'")
        elif kind == "param":
            text = raw[1:]
        tokens.append(Token(kind, text, match.start()))
    if tokens and tokens[-1].kind == "punct" and tokens[-1].text == ";" and not template:
        tokens.pop()
    return tokens


# ---- templates ---------------------------------------------------------------------------

_BY_ID = "FROM {table} WHERE {id} = {param:session}"
_UNNEST = "SELECT * FROM UNNEST ( ( SELECT {ident:field} " + _BY_ID + " ) )"
_ALIAS = "[ AS {ident:alias} ]"
_SHAPES: dict[str, str] = {
    "exists": f"SELECT 1 {_BY_ID} LIMIT {{int:limit}}",
    "unnest": _UNNEST,
    "unnest_find": (
        _UNNEST + " AS {ident:alias} WHERE {path:path} = {param:value} LIMIT {int:limit}"
    ),
    "field": f"SELECT {{ident:field}} {_ALIAS} {_BY_ID}",
    "slice": (
        "SELECT SLICE ( {ident:field} , GREATEST ( ARRAY_LENGTH ( {ident:field2} )"
        f" - {{param:n}} + 1 , 1 ) ) {_ALIAS} {_BY_ID}"
    ),
    "length": f"SELECT ARRAY_LENGTH ( {{ident:field}} ) {_ALIAS} {_BY_ID}",
    "count": f"SELECT COUNT ( * ) {_ALIAS} FROM {{table}}",
    # A page of sessions: one document per session, those holding records, in _id order.
    "page": (
        "SELECT {id} AS {ident:id_alias} , ARRAY_LENGTH ( {ident:field} ) AS {ident:count_alias} ,"
        " {ident:time} AS {ident:time_alias} FROM {table} WHERE {id} > {param:after} AND"
        " ARRAY_LENGTH ( {ident:field2} ) > 0 ORDER BY {id} LIMIT {int:limit}"
    ),
    # One session's record count and write time.
    "written": (
        "SELECT ARRAY_LENGTH ( {ident:field} ) AS {ident:count_alias} ,"
        " {ident:time} AS {ident:time_alias} " + _BY_ID
    ),
    # A keyset page of sessions by last-write time (missing: ''), then _id, either way.
    "summaries": (
        "SELECT {id} AS {ident:id_alias} , ARRAY_LENGTH ( {ident:field} ) AS {ident:count_alias} ,"
        " {ident:time} AS {ident:time_alias} , {ident:created} AS {ident:created_alias}"
        " FROM {table} WHERE ARRAY_LENGTH ( {ident:field2} ) > 0"
        " [AND ( COALESCE ( {ident:time2} , '' ) {cmp:op} {param:key} OR"
        " ( COALESCE ( {ident:time3} , '' ) = {param:key2} AND {id} {cmp:op2} {param:after} ) )]"
        " ORDER BY COALESCE ( {ident:time4} , '' ) {dir:dir} , {id} {dir:dir2} LIMIT {int:limit}"
    ),
    # The same columns for the sessions named.
    "summaries_of": (
        "SELECT {id} AS {ident:id_alias} , ARRAY_LENGTH ( {ident:field} ) AS {ident:count_alias} ,"
        " {ident:time} AS {ident:time_alias} , {ident:created} AS {ident:created_alias}"
        " FROM {table} WHERE {id} IN ( {params:ids} )"
    ),
    # Many sessions' fields in one query.
    "many": (
        "SELECT {id} AS {ident:id_alias} , {ident:field} AS {ident:alias} FROM {table}"
        " WHERE {id} IN ( {params:ids} )"
    ),
}

SUPPORTED_SHAPES = (
    "SELECT 1 FROM ws.coll WHERE _id = :p LIMIT n; "
    "SELECT * FROM UNNEST((SELECT field FROM ws.coll WHERE _id = :p)); "
    "the same followed by AS m WHERE m.a.b = :q LIMIT n; "
    "SELECT field [AS alias] FROM ws.coll WHERE _id = :p; "
    "SELECT SLICE(field, GREATEST(ARRAY_LENGTH(field) - :n + 1, 1)) [AS alias] "
    "FROM ws.coll WHERE _id = :p; "
    "SELECT ARRAY_LENGTH(field) [AS alias] FROM ws.coll WHERE _id = :p; "
    "SELECT COUNT(*) [AS alias] FROM ws.coll; "
    "SELECT _id AS a, ARRAY_LENGTH(field) AS b, field2 AS c FROM ws.coll "
    "WHERE _id > :p AND ARRAY_LENGTH(field) > 0 ORDER BY _id LIMIT n; "
    "SELECT ARRAY_LENGTH(field) AS a, field2 AS b FROM ws.coll WHERE _id = :p; "
    "SELECT _id AS a, field AS b FROM ws.coll WHERE _id IN (:p1, :p2, ...); "
    "SELECT _id AS a, ARRAY_LENGTH(field) AS b, time AS c, _event_time AS d FROM ws.coll "
    "WHERE ARRAY_LENGTH(field) > 0 [AND (COALESCE(time, '') < :k OR (COALESCE(time, '') = :k "
    "AND _id < :p))] ORDER BY COALESCE(time, '') DESC, _id DESC LIMIT n (or >, ASC); "
    "the same select list FROM ws.coll WHERE _id IN (:p1, :p2, ...)"
)


@dataclass(frozen=True)
class _Slot:
    kind: str  # table, id, ident, param, params (one or more, comma-separated), int, path
    name: str


_Element = Token | _Slot


def _compile(template: str) -> list[list[_Element]]:
    """All token sequences of a template, one per choice of its optional groups."""
    parts = re.split(r"\[([^\]]*)\]", template)
    fixed, optional = parts[0::2], parts[1::2]
    variants: list[list[_Element]] = []
    for chosen in itertools.product((True, False), repeat=len(optional)):
        text = fixed[0]
        for keep, group, tail in zip(chosen, optional, fixed[1:], strict=True):
            text += (group if keep else " ") + tail
        variants.append([_element(t) for t in tokenize(text, template=True)])
    return variants


def _element(token: Token) -> _Element:
    if token.kind != "slot":
        return token
    kind, _, name = token.text[1:-1].partition(":")
    return _Slot(kind, name or kind)


_COMPILED = {kind: _compile(template) for kind, template in _SHAPES.items()}


def _identifier(token: Token) -> str | None:
    if token.kind == "ident":
        return token.text or None
    if token.kind == "word" and token.text.upper() not in _RESERVED:
        return token.text
    return None


def _dotted(tokens: Sequence[Token], i: int) -> tuple[list[str], int]:
    """identifier ( '.' identifier )* starting at i; returns the names and the next index."""
    names: list[str] = []
    while i < len(tokens) and (name := _identifier(tokens[i])) is not None:
        names.append(name)
        i += 1
        dot = i + 1 < len(tokens) and tokens[i].kind == "punct" and tokens[i].text == "."
        if not (dot and _identifier(tokens[i + 1]) is not None):
            break
        i += 1
    return names, i


def _parameter_list(tokens: Sequence[Token], i: int) -> tuple[tuple[str, ...], int]:
    """:a ( ',' :b )* starting at i; returns the parameter names and the next index."""
    names: list[str] = []
    while i < len(tokens) and tokens[i].kind == "param":
        names.append(tokens[i].text)
        i += 1
        comma = i + 1 < len(tokens) and tokens[i].kind == "punct" and tokens[i].text == ","
        if not (comma and tokens[i + 1].kind == "param"):
            break
        i += 1
    return tuple(names), i


def _match(elements: list[_Element], tokens: Sequence[Token]) -> tuple[dict[str, Any] | None, int]:
    """Captured slots if tokens match the elements exactly, and how far matching got."""
    captures: dict[str, Any] = {}
    i = 0
    for element in elements:
        if i >= len(tokens):
            return None, i
        token = tokens[i]
        if isinstance(element, Token):
            if element.kind == "word":
                ok = token.kind == "word" and token.text.upper() == element.text.upper()
            else:
                ok = token.kind == element.kind and token.text == element.text
            if not ok:
                return None, i
            i += 1
            continue
        kind = element.kind
        if kind in ("table", "path"):
            names, j = _dotted(tokens, i)
            if kind == "table" and len(names) == 1:
                captures[element.name] = (DEFAULT_WORKSPACE, names[0])
            elif kind == "table" and len(names) == 2:
                captures[element.name] = (names[0], names[1])
            elif kind == "path" and len(names) >= 2:
                captures[element.name] = tuple(names)
            else:
                return None, i
            i = j
            continue
        if kind == "params":
            parameters, j = _parameter_list(tokens, i)
            if not parameters:
                return None, i
            captures[element.name] = parameters
            i = j
            continue
        if kind == "id":
            ok = token.kind in ("word", "ident") and token.text == "_id"
            value: Any = "_id"
        elif kind == "ident":
            value = _identifier(token)
            ok = value is not None
        elif kind == "param":
            ok, value = token.kind == "param", token.text
        elif kind == "cmp":
            ok = token.kind == "punct" and token.text in ("<", ">")
            value = token.text
        elif kind == "dir":
            ok = token.kind == "word" and token.text.upper() in ("ASC", "DESC")
            value = token.text.upper() if ok else None
        elif kind == "int":
            ok = token.kind == "number" and token.text.isdigit()
            value = int(token.text) if ok else None
        else:  # pragma: no cover - a typo in a template
            raise AssertionError(f"unknown slot kind {kind!r}")
        if not ok:
            return None, i
        captures[element.name] = value
        i += 1
    if i < len(tokens):
        return None, i
    return captures, i


# ---- statements ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    kind: str
    workspace: str
    collection: str
    slots: Mapping[str, Any]

    @property
    def parameters(self) -> tuple[str, ...]:
        single = tuple(
            self.slots[name]
            for name in ("session", "value", "n", "after", "key", "key2")
            if name in self.slots
        )
        return single + tuple(self.slots.get("ids", ()))

    @property
    def location(self) -> str:
        return f"{self.workspace}.{self.collection}"


def parse(sql: str) -> Statement:
    """Match a query against the supported shapes, or raise a 400 QUERY_ERROR."""
    tokens = tokenize(sql)
    if not tokens:
        raise query_error("Empty query")
    furthest = 0
    for kind, variants in _COMPILED.items():
        for elements in variants:
            captures, reached = _match(elements, tokens)
            if captures is not None:
                return _statement(kind, captures)
            furthest = max(furthest, reached)
    if furthest >= len(tokens):
        where = "the statement ends too early"
    else:
        start = tokens[furthest].pos
        where = f"matching stopped at {sql[start : start + 40].split(chr(10))[0]!r}"
    raise query_error(
        f"Unsupported SQL for the Rockset emulator ({where}). "
        f"Supported statements: {SUPPORTED_SHAPES}"
    )


def _statement(kind: str, captures: dict[str, Any]) -> Statement:
    workspace, collection = captures.pop("table")
    if kind == "slice" and captures["field"] != captures["field2"]:
        raise query_error(
            "Unsupported SQL for the Rockset emulator: "
            "SLICE and ARRAY_LENGTH must name the same field"
        )
    if kind == "page" and captures["field"] != captures["field2"]:
        raise query_error(
            "Unsupported SQL for the Rockset emulator: "
            "the selected and the filtered ARRAY_LENGTH must name the same field"
        )
    if kind == "summaries":
        _check_summaries(captures)
    aliases = [value for name, value in captures.items() if name.endswith("alias")]
    if len(set(aliases)) != len(aliases):
        raise query_error(f"Duplicate column aliases in the select list: {aliases}")
    if kind == "unnest_find" and captures["path"][0] != captures["alias"]:
        raise query_error(
            f"Unknown identifier '{captures['path'][0]}': the UNNEST alias is '{captures['alias']}'"
        )
    return Statement(kind, workspace, collection, captures)


def _check_summaries(captures: Mapping[str, Any]) -> None:
    """One field, one key and one direction throughout: the shapes the emulator can answer."""
    same = [
        ("field", "field2"), ("time", "time2"), ("time", "time3"), ("time", "time4"),
        ("key", "key2"), ("op", "op2"), ("dir", "dir2"),
    ]
    for first, second in same:
        if second in captures and captures[first] != captures[second]:
            raise query_error(
                "Unsupported SQL for the Rockset emulator: a page of summaries names one field, "
                "one key parameter, one comparison and one direction throughout"
            )
    if "op" in captures and (captures["op"] == "<") != (captures["dir"] == "DESC"):
        raise query_error(
            "Unsupported SQL for the Rockset emulator: a keyset page compares with '<' when "
            "it orders DESC and with '>' when it orders ASC"
        )


# ---- parameters ----------------------------------------------------------------------------


def bind_parameters(raw: Any) -> dict[str, Any]:
    """Convert the request's ``parameters`` list ({name, type, value} with string values)."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise query_error("'parameters' must be a list of {name, type, value} objects")
    bound: dict[str, Any] = {}
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise query_error("each query parameter must be an object with a string 'name'")
        name, type_, value = item["name"], item.get("type"), item.get("value")
        if not isinstance(type_, str) or not isinstance(value, str):
            raise query_error(f"query parameter '{name}' needs string 'type' and 'value' fields")
        bound[name] = _convert(name, type_.lower(), value)
    return bound


def _convert(name: str, type_: str, value: str) -> Any:
    try:
        if type_ == "int":
            return int(value)
        if type_ == "float":
            return float(value)
    except ValueError:
        raise query_error(f"query parameter '{name}': {value!r} is not a valid {type_}") from None
    if type_ == "bool":
        if value.lower() not in ("true", "false"):
            raise query_error(f"query parameter '{name}': {value!r} is not a valid bool")
        return value.lower() == "true"
    if type_ in ("string", "date", "datetime", "time", "timestamp"):
        return value
    raise query_error(f"query parameter '{name}' has an unsupported type '{type_}'")


# ---- execution -----------------------------------------------------------------------------

_MISSING = object()


def execute(
    statement: Statement, params: Mapping[str, Any], documents: Mapping[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Rows for a statement over the visible documents of its collection.

    Rows share structure with the stored documents; stored documents are never
    mutated in place, so serialising the rows later is safe without a lock.
    """
    for name in statement.parameters:
        if name not in params:
            raise query_error(f"Query parameter '{name}' was not provided")
    slots = statement.slots
    kind = statement.kind
    if kind == "count":
        return [{slots.get("alias", "?COUNT"): len(documents)}]
    if kind == "page":
        return _page(slots, params[slots["after"]], documents)
    if kind == "many":
        return _many(slots, [params[name] for name in slots["ids"]], documents)
    if kind == "summaries":
        return _summaries(slots, params, documents)
    if kind == "summaries_of":
        wanted = {params[name] for name in slots["ids"] if isinstance(params[name], str)}
        return [_summary_row(slots, doc_id, documents[doc_id])
                for doc_id in sorted(wanted & documents.keys())]
    session = params[slots["session"]]
    document = documents.get(session) if isinstance(session, str) else None
    if document is None:
        return []
    if kind == "exists":
        return [{"?INT": 1}] if slots["limit"] > 0 else []
    if kind == "written":
        return [_columns(document, ((slots["count_alias"], slots["field"], True),
                                    (slots["time_alias"], slots["time"], False)))]
    value = document.get(slots["field"], _MISSING)
    if kind in ("unnest", "unnest_find"):
        elements = _array(value, "UNNEST")
        if kind == "unnest_find":
            wanted = params[slots["value"]]
            path = slots["path"][1:]
            elements = [e for e in elements if _equal(_navigate(e, path), wanted)][: slots["limit"]]
        return [_unnest_row(e) for e in elements]
    if kind == "field":
        column = slots.get("alias", slots["field"])
    elif kind == "length":
        column = slots.get("alias", "?ARRAY_LENGTH")
        if value is not _MISSING and value is not None:
            value = len(_array(value, "ARRAY_LENGTH"))
    else:  # slice
        column = slots.get("alias", "?SLICE")
        value = _newest(value, params[slots["n"]])
    return [{} if value is _MISSING else {column: value}]


def _columns(document: Mapping[str, Any], columns: Sequence[tuple[str, str, bool]]
             ) -> dict[str, Any]:
    """A row of (alias, field, as ARRAY_LENGTH) columns; a missing or null field is left out."""
    row: dict[str, Any] = {}
    for alias, field, length in columns:
        value = document.get(field)
        if value is None:
            continue
        row[alias] = len(_array(value, "ARRAY_LENGTH")) if length else value
    return row


def _page(slots: Mapping[str, Any], after: Any, documents: Mapping[str, dict[str, Any]]
          ) -> list[dict[str, Any]]:
    """Documents whose _id sorts after ``after`` and whose array is not empty, by _id."""
    if not isinstance(after, str):
        raise query_error(f"_id > :{slots['after']} compares strings; the parameter is not one")
    rows: list[dict[str, Any]] = []
    for doc_id in sorted(doc_id for doc_id in documents if doc_id > after):
        if len(rows) >= slots["limit"]:
            break
        document = documents[doc_id]
        if not _array(document.get(slots["field"]), "ARRAY_LENGTH"):
            continue
        row = {slots["id_alias"]: doc_id}
        row.update(_columns(document, ((slots["count_alias"], slots["field"], True),
                                       (slots["time_alias"], slots["time"], False))))
        rows.append(row)
    return rows


def _summary_row(slots: Mapping[str, Any], doc_id: str, document: Mapping[str, Any]
                 ) -> dict[str, Any]:
    row = {slots["id_alias"]: doc_id}
    row.update(_columns(document, ((slots["count_alias"], slots["field"], True),
                                   (slots["time_alias"], slots["time"], False),
                                   (slots["created_alias"], slots["created"], False))))
    return row


def _summaries(slots: Mapping[str, Any], params: Mapping[str, Any],
               documents: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Documents with records, ordered by (COALESCE(time, ''), _id), after the keyset if given."""

    def key(doc_id: str) -> tuple[str, str]:
        written = documents[doc_id].get(slots["time"])
        if written is not None and not isinstance(written, str):
            raise query_error(f"COALESCE({slots['time']}, '') compares strings; "
                              f"document {doc_id!r} holds a {type(written).__name__}")
        return (written or "", doc_id)

    newest_first = slots["dir"] == "DESC"
    keys = {doc_id: key(doc_id) for doc_id in documents
            if _array(documents[doc_id].get(slots["field"]), "ARRAY_LENGTH")}
    if "key" in slots:
        position = (params[slots["key"]], params[slots["after"]])
        if not all(isinstance(value, str) for value in position):
            raise query_error("a keyset page compares strings; its parameters are not")
        keys = {doc_id: value for doc_id, value in keys.items()
                if (value < position if newest_first else value > position)}
    ordered = sorted(keys, key=keys.__getitem__, reverse=newest_first)[: slots["limit"]]
    return [_summary_row(slots, doc_id, documents[doc_id]) for doc_id in ordered]


def _many(slots: Mapping[str, Any], ids: Sequence[Any], documents: Mapping[str, dict[str, Any]]
          ) -> list[dict[str, Any]]:
    """A row per document whose _id is one of ``ids`` (non-strings match nothing), by _id."""
    wanted = {doc_id for doc_id in ids if isinstance(doc_id, str)}
    rows: list[dict[str, Any]] = []
    for doc_id in sorted(wanted & documents.keys()):
        row = {slots["id_alias"]: doc_id}
        row.update(_columns(documents[doc_id], ((slots["alias"], slots["field"], False),)))
        rows.append(row)
    return rows


def _array(value: Any, function: str) -> list[Any]:
    if value is _MISSING or value is None:
        return []
    if not isinstance(value, list):
        raise query_error(f"{function} expects an array, got {type(value).__name__}")
    return value


def _unnest_row(element: Any) -> dict[str, Any]:
    return dict(element) if isinstance(element, dict) else {"unnest": element}


def _newest(value: Any, n: Any) -> Any:
    """SLICE(a, GREATEST(ARRAY_LENGTH(a) - n + 1, 1)) with 1-based, open-ended SLICE."""
    if value is _MISSING or value is None:
        return value
    if isinstance(n, bool) or not isinstance(n, int):
        raise query_error(f"ARRAY_LENGTH(...) - :n needs an int parameter, got {type(n).__name__}")
    array = _array(value, "SLICE")
    start = max(len(array) - n + 1, 1)
    return array[start - 1 :]


def _navigate(value: Any, path: Sequence[str]) -> Any:
    for name in path:
        if not isinstance(value, dict) or name not in value:
            return _MISSING
        value = value[name]
    return value


def _equal(left: Any, right: Any) -> bool:
    """SQL '=' on JSON values: typed (no '1' = 1, no true = 1), null never equal."""
    if left is _MISSING or left is None or right is None:
        return False
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    return type(left) is type(right) and bool(left == right)

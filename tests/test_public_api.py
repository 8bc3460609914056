import inspect
import re
from pathlib import Path

import chathistory
from chathistory import hookspecs

ROOT = Path(__file__).resolve().parents[1]

PUBLIC = {
    "IDENTIFIER_PATTERN", "Backend", "BackendConfig", "BackendInfo", "BackendLoadError",
    "BackendNotFoundError", "BackendUnavailableError", "BaseBackend", "CapabilityMissingError",
    "ChatHistory",
    "ChatHistoryMiddleware", "SessionIdError", "Call", "Driver", "Operation", "Runner",
    "operation",
    "ChatHistoryError", "CollectionMissingError", "CollectionTimeoutError", "ConfigError",
    "DuplicateBackendError",
    "Identifier", "PermissionDeniedError", "RecordError", "SessionHistoryFactory", "Translate",
    "aretry_transient", "available_backends", "backend_class", "decode_record",
    "decode_records", "encode_record", "encode_records", "get_backend", "history_factory",
    "hookimpl", "hookspec",
    "retry_transient", "to_messages", "to_records", "validate_options",
    # the session catalog (issue 19)
    "ErasureReceipt", "KeepsCatalog", "SessionSummary", "SummaryPage", "aerase",
    "alist_conversations", "erase", "list_conversations",
}


def test_the_public_names_are_pinned() -> None:
    assert set(chathistory.__all__) == PUBLIC
    for name in PUBLIC:
        assert hasattr(chathistory, name), name


def test_the_package_is_typed() -> None:
    assert (Path(chathistory.__file__).parent / "py.typed").exists()


def test_every_error_is_a_chathistory_error() -> None:
    errors = [getattr(chathistory, name) for name in PUBLIC if name.endswith("Error")]
    assert errors and all(issubclass(error, chathistory.ChatHistoryError) for error in errors)


def _hooks() -> list[str]:
    return [name for name, value in inspect.getmembers(hookspecs, inspect.isfunction)
            if name.startswith("chathistory_")]


def test_every_hook_has_a_docstring_a_doc_entry_and_a_test() -> None:
    docs = (ROOT / "docs" / "writing-a-backend.md").read_text()
    tests = "".join(path.read_text() for path in (ROOT / "tests").rglob("*.py"))
    for hook in _hooks():
        assert inspect.getdoc(getattr(hookspecs, hook)), hook
        assert f"`{hook}()`" in docs, f"{hook} is not documented"
        assert re.search(rf"def {hook}\(", tests), f"{hook} has no test implementing it"


def test_every_backend_page_is_in_the_docs_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs" / "backends").glob("*.md"):
        assert f"backends/{page.name}" in nav, page.name

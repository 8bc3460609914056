"""The documentation shows code that is true."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WRITING_A_BACKEND = ROOT / "docs" / "writing-a-backend.md"

# A file's path on a line of its own, then a blank line, then the fenced code block.
FILE_BLOCK = re.compile(r"^`(?P<path>[^`\n]+)`:\n\n```\w*\n(?P<code>.*?)^```$",
                        re.MULTILINE | re.DOTALL)


def test_writing_a_backend_shows_every_file_of_the_example_as_it_is() -> None:
    text = WRITING_A_BACKEND.read_text()
    shown = {match["path"]: match["code"] for match in FILE_BLOCK.finditer(text)}
    example = ROOT / "tests" / "example_backend"
    files = {str(path.relative_to(ROOT)) for path in example.rglob("*")
             if path.suffix in {".py", ".toml"} and "__pycache__" not in path.parts}
    assert set(shown) == files
    for path, code in shown.items():
        assert code == (ROOT / path).read_text(), f"{path} differs from its block in the docs"


def test_writing_a_backend_needs_no_snippet_includes() -> None:
    """GitHub shows the page as plain Markdown, where includes are not expanded."""
    assert "--8<--" not in WRITING_A_BACKEND.read_text()

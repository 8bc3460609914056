"""The docs' agent quickstart runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs" / "agents.md"


def test_the_agents_page_quickstart_runs_and_prints_what_it_says(tmp_path: Path) -> None:
    quickstart = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.DOTALL)[0]
    result = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c",
                             quickstart], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "[1, 3, 5, 7]"
    assert [line.split()[0] for line in lines[1:]] == ["human", "ai", "tool", "ai"] * 2
    assert (tmp_path / "chat.sqlite3").exists()

"""The backend's wheel holds the backend only: the emulator is a distribution of its own."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

BACKEND = Path(__file__).resolve().parents[1]


def test_the_backend_wheel_holds_no_emulator(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
                    "--no-deps", "-w", str(tmp_path), str(BACKEND)], check=True, timeout=600)
    (wheel,) = tmp_path.glob("chathistory_rockset-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "chathistory_rockset/backend.py" in names
    assert [name for name in names if "emulator" in name] == []

"""Installing from a checkout works as the README says: `make dist`, then pip install a wheel."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*command: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # No PYTHONPATH and no virtualenv of ours: the clean venv sees only what it installed.
    env = {name: value for name, value in os.environ.items()
           if name not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True,
                            timeout=600, env=env, cwd=cwd, check=False)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_make_dist_builds_every_wheel_and_the_core_wheel_runs_the_demo_in_a_clean_venv(
        tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run("make", "--no-print-directory", "dist", f"DIST={dist}", f"PYTHON={sys.executable}",
        cwd=ROOT)
    projects = [*ROOT.glob("backends/*/pyproject.toml"), *ROOT.glob("backends/*/*/pyproject.toml")]
    names = {tomllib.loads(path.read_text())["project"]["name"] for path in projects}
    built = {wheel.name.split("-")[0] for wheel in dist.glob("*.whl")}
    assert built == {"chathistory"} | {name.replace("-", "_") for name in names}

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    (core,) = dist.glob("chathistory-*.whl")
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", core)

    where = run(python, "-c", "import chathistory; print(chathistory.__file__)").stdout
    assert Path(where.strip()).is_relative_to(venv), where  # the wheel, not this checkout
    listed = run(venv / "bin" / "chathistory", "backends").stdout
    assert [line.split()[0] for line in listed.splitlines()[1:]] == ["memory", "sqlite"]

    demo = run(python, "-m", "chathistory", "demo", "--path", tmp_path / "demo.sqlite3",
               "--session", "installed", cwd=tmp_path).stdout
    assert "Conversation 'installed'" in demo
    assert "Paris was warmer" in demo
    assert '    ai: -> get_weather(city="Paris")' in demo

"""A built wheel carries the migrations: kvstore.open() works from any directory once installed."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(REPO)],
        check=True, capture_output=True, timeout=600,
    )
    (built,) = out.glob("kvstore-*.whl")
    return built


def test_wheel_contains_migrations_and_type_marker(wheel):
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    assert "kvstore/migrations/env.py" in names
    assert "kvstore/migrations/versions/0002_counts.py" in names
    assert "kvstore/py.typed" in names


def test_installed_wheel_opens_and_upgrades_from_another_directory(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=False, with_pip=True)
    python = env_dir / "bin" / "python"
    # Dependencies come from the environment running the tests (the venv .ci/run made), never
    # from the base interpreter, which on a fresh machine has none of them. A .pth line adds
    # that site-packages as a plain directory: its own .pth files (the editable install of
    # this checkout) are not processed, so kvstore itself can only come from the wheel.
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    running = dict.fromkeys(sysconfig.get_paths()[name] for name in ("purelib", "platlib"))
    Path(purelib, "_running_env.pth").write_text("".join(f"{p}\n" for p in running))
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = """
import sqlite3, kvstore, kvstore.history as h, kvstore.sqlite.migrate as m
assert 'site-packages' in kvstore.__file__, kvstore.__file__
assert h.script_location().parent.name == 'kvstore', h.script_location()
with kvstore.open('new.db') as db:
    db[1] = 'apple'
    assert db.count('apple') == 1
m.migrate('new.db', '0001', m.Options())   # needs the packaged migration scripts
with kvstore.open('new.db') as db:           # upgrades back to head
    assert db.count('apple') == 1 and db.verify() == []
print('ok')
"""
    result = subprocess.run([str(python), "-c", script], cwd=elsewhere, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"

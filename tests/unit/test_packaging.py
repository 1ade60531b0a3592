"""What the package ships: its license, its pytest plugin, and extras the README documents."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def extras() -> dict[str, list[str]]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    section = config["options.extras_require"]
    return {name: section[name].split() for name in section}


def test_the_wheel_carries_the_license_and_the_pytest_plugin(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("pgqueue_sync-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [license_file] = [n for n in names if re.search(r"\.dist-info/(licenses/)?LICENSE$", n)]
        assert "MIT License" in archive.read(license_file).decode()
        assert "Copyright (c) the pgqueue-sync authors" in archive.read(license_file).decode()
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        text = archive.read(entry_points).decode()
    assert "[pytest11]\npgqueue_sync = pgqueue_sync.testing.plugin" in text
    assert "pgqueue_sync/contrib/flask.py" in names
    assert "pgqueue_sync/testing/plugin.py" in names
    assert "pgqueue_sync/contrib/django/migrations/0001_install.py" in names
    assert "pgqueue_sync/contrib/django/management/commands/pgq_worker.py" in names
    assert "pgqueue_sync/contrib/django/management/commands/pgq.py" in names


def test_the_readme_lists_every_extra_with_a_line_that_works_from_a_checkout() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in extras():
        assert re.search(
            rf'^\| `{name}` \| .+ \| `pip install -e "\.\[{name}\]"` \|$', readme, re.M
        ), f"README: no row for the {name!r} extra"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_the_flask_extra_brings_flask_and_the_commands() -> None:
    assert {"flask>=3.0", "click>=8.1", "rich>=13"} <= set(extras()["flask"])


def test_the_django_extra_brings_django_and_the_backport_where_django_6_cannot_run() -> None:
    django = extras()["django"]
    assert "django>=4.2" in django
    # Django 6 (django.tasks) needs Python 3.12: before it, the backport.
    assert 'django-tasks>=0.12; python_version < "3.12"' in " ".join(django)

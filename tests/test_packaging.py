"""The distribution as PyPI would get it: build, check, install into a fresh virtualenv.

Builds the sdist and a wheel from it (``python -m build``), runs ``twine check``,
installs the wheel alone into a throwaway virtualenv (pip's cache and the
configured indexes provide Django) and runs ``manage.py check`` of a minimal
project that has the app in ``INSTALLED_APPS``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

import django_broadcaster

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTION = "django_broadcast_bus"

# Files besides modules that the wheel must carry.
PACKAGE_DATA = [
    "django_broadcaster/py.typed",
    "django_broadcaster/migrations/__init__.py",
    "django_broadcaster/migrations/0001_initial.py",
    "django_broadcaster/migrations/0002_pruned_history_bookkeeping.py",
    "django_broadcaster/management/commands/broadcast.py",
]

SETTINGS = """\
SECRET_KEY = "packaging-test"
INSTALLED_APPS = ["django_broadcaster"]
DATABASES = {}
USE_TZ = True
"""

MANAGE = """\
import os
import sys

from django.core.management import execute_from_command_line

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
execute_from_command_line(sys.argv)
"""


def run(*args: str | Path, cwd: Path = ROOT) -> str:
    """Run a command with no PYTHONPATH (so only installed code is found); its output."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and wheel, built from the working tree into a temporary folder."""
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, ROOT)
    return out


def only(folder: Path, pattern: str) -> Path:
    """The single file of folder matching pattern."""
    (found,) = folder.glob(pattern)
    return found


def test_names_and_version_come_from_one_place(dist: Path) -> None:
    version = django_broadcaster.__version__
    only(dist, f"{DISTRIBUTION}-{version}.tar.gz")
    only(dist, f"{DISTRIBUTION}-{version}-py3-none-any.whl")


def test_twine_check_passes(dist: Path) -> None:
    out = run(sys.executable, "-m", "twine", "check", "--strict", *sorted(dist.iterdir()))
    assert out.count("PASSED") == 2, out


def test_wheel_and_sdist_carry_package_data(dist: Path) -> None:
    with zipfile.ZipFile(only(dist, "*.whl")) as wheel:
        in_wheel = set(wheel.namelist())
    assert set(PACKAGE_DATA) <= in_wheel, sorted(set(PACKAGE_DATA) - in_wheel)
    assert not [name for name in in_wheel if name.startswith("tests/")]
    with tarfile.open(only(dist, "*.tar.gz")) as sdist:
        in_sdist = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert set(PACKAGE_DATA) | {"README.md", "pyproject.toml"} <= in_sdist


def test_installed_wheel_passes_manage_py_check(dist: Path, tmp_path: Path) -> None:
    env = tmp_path / "venv"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    # This virtualenv's pip installs into the fresh one (faster than bootstrapping pip there).
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", only(dist, "*.whl"))
    project = tmp_path / "project"
    project.mkdir()
    (project / "settings.py").write_text(SETTINGS)
    (project / "manage.py").write_text(MANAGE)

    where = run(python, "-c", "import django_broadcaster as d; print(d.__file__)", cwd=project)
    assert Path(where.strip()).resolve().is_relative_to(env.resolve()), where
    out = run(python, "manage.py", "check", cwd=project)
    assert "System check identified no issues" in out, out

"""Every ``django_broadcaster.…`` dotted path the docs and README mention imports."""

from __future__ import annotations

import re
from importlib import import_module
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOTTED = re.compile(r"\bdjango_broadcaster(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
SOURCES = sorted([ROOT / "README.md", *ROOT.glob("docs/**/*.rst")])
#: Names in the same namespace that are not Python paths: system check ids, and the
#: channel ``manage.py broadcast status`` probes.
NOT_PATHS = re.compile(r"django_broadcaster\.([EW]0\w\w|status)$")


def mentioned_paths() -> list[str]:
    paths = {match for source in SOURCES for match in DOTTED.findall(source.read_text())}
    return sorted(path for path in paths if not NOT_PATHS.match(path))


def resolve(path: str) -> object:
    """Import the longest importable module prefix of ``path``, then walk attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            target = getattr(target, name)
        return target
    raise ModuleNotFoundError(path)


def test_the_docs_mention_dotted_paths() -> None:
    assert len(mentioned_paths()) > 20


@pytest.mark.parametrize("path", mentioned_paths())
def test_dotted_path_imports(path: str) -> None:
    resolve(path)


def test_no_module_is_shadowed_by_a_package_attribute() -> None:
    """``import django_broadcaster.x`` and ``django_broadcaster.x`` are the same object."""
    package = import_module("django_broadcaster")
    for module in (ROOT / "django_broadcaster").glob("*.py"):
        name = module.stem
        if name == "__init__":
            continue
        imported = import_module(f"django_broadcaster.{name}")
        assert getattr(package, name, imported) is imported, name

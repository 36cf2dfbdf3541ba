"""Every test under tests/reliability/ carries the ``reliability`` marker, so
``pytest -m reliability`` (or ``pytest tests/reliability``) runs the suite alone
and ``-m "not reliability"`` leaves it out."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.reliability)

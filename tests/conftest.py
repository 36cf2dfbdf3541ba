import uuid
from collections.abc import AsyncIterator

import pytest

from django_broadcaster import Broadcast

from .support.backends import CONFORMANCE_BACKENDS, make_bus


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests run on the PostgreSQL backend need the migrated test database (its history
    table); pytest-django creates it only for sessions holding a ``django_db`` test."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and any("postgres" in str(v) for v in callspec.params.values()):
            item.add_marker(pytest.mark.django_db)


@pytest.fixture(scope="session")
def postgres_table(django_db_setup: None) -> None:
    """The migrated test database exists, so PostgresBackend's history table does too."""


@pytest.fixture(params=list(CONFORMANCE_BACKENDS))
def backend_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if "postgres" in name:
        # The history table lives in the test database (created by migrations).
        request.getfixturevalue("postgres_table")
    return name


@pytest.fixture
async def bus(backend_name: str) -> AsyncIterator[Broadcast]:
    """A fresh `Broadcast` on each backend in turn."""
    front = make_bus(backend_name)
    yield front
    await front.aclose()
    front.close()  # the bridge loop's hub, used by sync publish


@pytest.fixture
async def hosts(backend_name: str) -> AsyncIterator[list[Broadcast]]:
    """Two `Broadcast` fronts on one backend store/server and ``KEY_PREFIX``, as two
    hosts would have; closed after the test."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    fronts = [make_bus(backend_name, KEY_PREFIX=prefix) for _ in range(2)]
    yield fronts
    for front in fronts:
        await front.aclose()
        front.close()

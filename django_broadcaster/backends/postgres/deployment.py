"""Whether the backend's tables exist: system check ``E008``, and the same error at run time.

``manage.py migrate`` creates the history, pruned and queue tables; until it
ran against the backend's database, ``check --database`` reports a missing one
and publishing, subscribing or reading history raise a `ConfigError` naming
the command, instead of a bare ``UndefinedTable``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from types import FrameType

import psycopg
from django.core.checks import CheckMessage, Error

from ...exceptions import ConfigError
from ...masking import mask_password
from ..base import BackendConfig
from .configuration import is_url
from .queues import QUEUE_TABLE
from .statements import HISTORY_TABLE, PRUNED_TABLE

#: The tables ``migrate`` creates for the backend.
TABLES = (HISTORY_TABLE, PRUNED_TABLE, QUEUE_TABLE)

MISSING_TABLE_ID = "django_broadcaster.E008"


def deployment_checks(config: BackendConfig, databases: Sequence[str] | None) -> list[CheckMessage]:
    """``E008`` when one of the backend's `TABLES` is missing.

    Like Django's database checks this queries only when the check run names
    databases (``check --database``, ``migrate``, the test runner): for an
    alias ``LOCATION``, only when that alias is among them.
    """
    if not databases or _running_migrate():
        return []
    if is_url(config.location):
        missing = _missing_at(config.location)
        where = mask_password(config.location)
        hint = (
            "the tables are created by `manage.py migrate django_broadcaster` run against "
            "this database: add a DATABASES alias for it and run migrate --database ALIAS "
            "(or use that alias as LOCATION)"
        )
    else:
        from django.db import DEFAULT_DB_ALIAS

        alias = config.location or DEFAULT_DB_ALIAS
        if alias not in databases:
            return []
        missing = _missing_in(alias)
        where = f"database {alias!r}"
        hint = f"run `manage.py migrate django_broadcaster --database {alias}`"
    if not missing:
        return []
    return [
        Error(
            f"BROADCAST_BACKENDS[{config.alias!r}]: the table(s) {', '.join(map(repr, missing))} "
            f"of PostgresBackend do not exist in {where}",
            hint=hint,
            id=MISSING_TABLE_ID,
        )
    ]


def missing_table_error(alias: str, location: str) -> ConfigError:
    """The error raised when a statement finds a table of the backend missing in its database."""
    database = mask_password(location) if is_url(location) else location
    return ConfigError(
        f"a broadcast table ({' or '.join(map(repr, TABLES))}) does not exist in the database "
        f"of {alias!r} ({database or 'default'})",
        check_id=MISSING_TABLE_ID,
        hint="run `manage.py migrate django_broadcaster` against that database",
    )


def _running_migrate() -> bool:
    """Whether these checks run inside ``migrate``, which is about to create the table."""
    from django.core.management.commands.migrate import Command as Migrate

    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if isinstance(frame.f_locals.get("self"), Migrate):
            return True
        frame = frame.f_back
    return False


def _missing_in(alias: str) -> list[str]:
    """The `TABLES` not visible on Django's connection ``alias`` (none when it cannot
    tell, e.g. the database is down; other checks and commands report that)."""
    from django.db import DatabaseError, connections

    connection = connections[alias]
    try:
        with connection.cursor() as cursor:
            present = set(connection.introspection.table_names(cursor))
    except DatabaseError:
        return []
    return [table for table in TABLES if table not in present]


def _missing_at(url: str) -> list[str]:
    """The `TABLES` not visible at ``url`` (none when it cannot tell)."""
    try:
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
            rows = [conn.execute("SELECT to_regclass(%s)", (t,)).fetchone() for t in TABLES]
    except psycopg.Error:
        return []
    return [table for table, row in zip(TABLES, rows, strict=True) if not (row and row[0])]

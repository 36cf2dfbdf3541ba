"""The connections of one `PostgresBackend`: opened from ``LOCATION``, closed safely.

A `Connector` turns ``LOCATION`` into psycopg connection arguments (a
``DATABASES`` entry exactly as Django builds them, or a URL), keeps the
password out of every error, reports a missing history table as such, and
never hands out a connection opened across the backend's ``close()``.
`shut` closes a connection without pulling its socket from under a coroutine
still using it.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping
from contextlib import suppress
from types import TracebackType
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from ... import loops
from ...masking import redact
from .configuration import is_url
from .deployment import missing_table_error
from .statements import set_role

Connection = psycopg.AsyncConnection[TupleRow]

_DEFAULT_PARAMS: Mapping[str, Any] = {
    "application_name": "django-broadcaster",
    "client_encoding": "UTF8",
    "connect_timeout": 5,
    # A LISTEN connection is idle for long stretches: let TCP notice a dead peer.
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


class Connector:
    """Opens the autocommit connections of one backend.

    `stop` (the backend closes) makes it refuse connections and discard one
    being opened meanwhile; `start` (the backend connects) accepts them again.
    """

    def __init__(self, alias: str, location: str, owner: str) -> None:
        self.alias = alias
        self.location = location
        self.owner = owner  # how errors name the backend (password masked)
        self.stopped = False
        self._epoch = 0  # bumped by stop(): a connection opened across it is discarded
        self._secrets: list[str] = []
        self._errors = _Errors(self)

    def start(self) -> None:
        """Hand out connections again (after `stop`)."""
        self.stopped = False

    def stop(self) -> None:
        """Refuse connections from now on, including those being opened."""
        self.stopped = True
        self._epoch += 1

    def params(self) -> tuple[dict[str, Any], str | None]:
        """psycopg connect arguments, and the role to assume (Django's ``assume_role``)."""
        role = None
        if is_url(self.location):
            given: dict[str, Any] = conninfo_to_dict(self.location)
        else:
            from django.db import DEFAULT_DB_ALIAS, connections

            wrapper = connections[self.location or DEFAULT_DB_ALIAS]
            options = wrapper.settings_dict.get("OPTIONS", {})
            given = dict(wrapper.get_connection_params())
            for key in ("cursor_factory", "context", "prepare_threshold"):
                given.pop(key, None)
            if "prepare_threshold" in options:
                given["prepare_threshold"] = options["prepare_threshold"]
            role = options.get("assume_role")
        params = {**_DEFAULT_PARAMS, **given}
        if params.get("password"):
            self._secrets = [str(params["password"])]
        return params, role

    def scrub(self, exc: psycopg.Error) -> psycopg.Error:
        """``exc``, or a copy of it without the password of ``LOCATION`` or its
        ``DATABASES`` entry (known once `params` ran)."""
        text = str(exc)
        clean = redact(text, self.location)
        for secret in self._secrets:
            clean = clean.replace(secret, "***")
        return exc if clean == text else type(exc)(clean)

    async def open(self, *settings: str) -> Connection:
        """A new autocommit connection that ran the ``SET`` statements ``settings``;
        raises (and closes it) if `stop` ran meanwhile."""
        if self.stopped:
            raise psycopg.OperationalError(f"{self.owner} is closed")
        epoch = self._epoch
        params, role = self.params()
        try:
            conn = await psycopg.AsyncConnection.connect(autocommit=True, **params)
            try:
                if role:
                    await conn.execute(set_role(role))
                for setting in settings:
                    await conn.execute(setting)
            except loops.ERRORS_AND_CANCELLATION:
                await conn.close()
                raise
        except psycopg.Error as exc:
            raise self.scrub(exc) from None
        if epoch != self._epoch:
            await conn.close()
            raise psycopg.OperationalError(f"{self.owner} was closed while connecting")
        return conn

    def errors(self) -> _Errors:
        """Around statements (``async with``): a missing history table raises ``E008``
        (a `ConfigError` naming ``migrate``), a connection error raises without the
        password."""
        return self._errors


class _Errors:
    """`Connector.errors`: a plain object, not an async generator, as it wraps
    every publish."""

    __slots__ = ("_connector",)

    def __init__(self, connector: Connector) -> None:
        self._connector = connector

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        connector = self._connector
        if isinstance(exc, psycopg.errors.UndefinedTable):
            raise missing_table_error(connector.alias, connector.location) from exc
        if isinstance(exc, psycopg.OperationalError):
            raise connector.scrub(exc) from None


async def shut(conn: Connection, grace: float) -> None:
    """Close ``conn`` without freeing its socket under a coroutine still waiting on it.

    That coroutine's event loop would keep watching the file descriptor number,
    which the next connection reuses ("connection socket closed"). So: let the
    statement in flight finish for ``grace`` seconds, else shut the socket down
    (waiters fail at once), and close once psycopg's lock is free.
    """
    acquired = False
    try:
        if grace > 0:
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(conn.lock.acquire(), grace)
                acquired = True
        if not acquired:
            with suppress(Exception):
                fd = os.dup(conn.pgconn.socket)
                with socket.socket(fileno=fd) as sock:
                    sock.shutdown(socket.SHUT_RDWR)
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(conn.lock.acquire(), 2.0)
                acquired = True
        with suppress(Exception):
            await conn.close()
    finally:
        if acquired:
            conn.lock.release()

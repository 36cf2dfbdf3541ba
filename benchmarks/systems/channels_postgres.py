"""channels-postgres: the channels_postgres layer (PyPI ``channels-postgres``).

It keeps its messages and groups in tables of its own, created by its Django
migrations: the adapter configures Django with the benchmark database and
``channels_postgres`` installed and runs ``migrate`` first (the tables stay,
as they would in a project using it). Driven like the other layers.

Its listener (one ``LISTEN`` connection per process) is started by the first
``receive()``; every ``receive()`` made before it is up starts one more, so
1,000 consumers starting together would open 1,000 connections (and exhaust
PostgreSQL's ``max_connections``). ``start()`` therefore lets one
``receive()`` bring the listener up first, as a long-running worker would have.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .base import Adapter, Unavailable
from .channels_layers import ChannelLayerAdapter
from .ours import database


def postgres() -> Adapter:
    db = database()
    try:
        import django
        from django.conf import settings

        # It deletes through the ORM on an alias named after itself.
        settings.configure(
            INSTALLED_APPS=["channels_postgres"],
            DATABASES={"default": db, "channels_postgres": db},
            USE_TZ=True,
        )
        django.setup()
        from django.core.management import call_command

        call_command("migrate", "channels_postgres", verbosity=0)
    except Exception as exc:
        raise Unavailable(f"not available: {type(exc).__name__}: {exc}") from exc
    from channels_postgres.core import PostgresChannelLayer

    options: dict[str, Any] = dict(db)
    return ListeningFirst(PostgresChannelLayer(**options))


class ListeningFirst(ChannelLayerAdapter):
    async def start(self) -> None:
        self.first = asyncio.create_task(self.layer.receive(await self.layer.new_channel()))
        for _ in range(1000):
            running = self.layer.listener_task_is_running
            if running is not None and running.is_set():
                return
            await asyncio.sleep(0.01)
        raise RuntimeError("channels_postgres's listener did not start within 10 s")

    async def close(self) -> None:
        self.first.cancel()
        await asyncio.gather(self.first, return_exceptions=True)

"""The groundwork of the backend conformance kit (see `django_broadcaster.testing.conformance`):
the settings each test runs under, the ``break_connection()`` hook and bounded waits."""

from __future__ import annotations

import asyncio
import inspect
import unittest
import uuid
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from django.test.utils import override_settings

from ..backends.base import BaseBackend, RawEvent
from ..events import Event
from ..exceptions import HistoryNotSupported
from ..front import Broadcast
from ..handler import broadcasts
from ..subscription import Subscription

#: Seconds any single wait of the kit may take before the test fails: a broken
#: backend fails the kit instead of hanging it.
TIMEOUT = 10.0


class AbstractCase(ABCMeta):
    """The metaclass of the kit's classes: an abstract class lists no tests.

    Test loaders (unittest's, which Django's test runner uses, and pytest's
    for unittest classes) find test methods with ``dir()``; until a subclass
    implements ``break_connection()`` the class is abstract and shows them
    none, so importing the kit into a test module runs nothing by itself.
    """

    def __dir__(cls) -> Iterable[str]:
        names = super().__dir__()
        if inspect.isabstract(cls):
            return [name for name in names if not name.startswith("test")]
        return names


class ContractCase(unittest.IsolatedAsyncioTestCase, metaclass=AbstractCase):
    """Each test gets fresh aliases on the backend under test (public settings only)."""

    #: Dotted path of the backend class under test (``BROADCAST_BACKENDS[...]["BACKEND"]``).
    BACKEND: ClassVar[str] = ""
    #: Its ``LOCATION``.
    LOCATION: ClassVar[str] = ""
    #: Its ``OPTIONS``.
    OPTIONS: ClassVar[Mapping[str, Any]] = {}
    #: ``OPTIONS`` added to `OPTIONS` to make a backend with history keep only a few
    #: events per channel (``{"MAXLEN": 5}``, say), for the tests of ``HistoryGap``;
    #: they are skipped while it is ``None``.
    RETENTION_OPTIONS: ClassVar[Mapping[str, Any] | None] = None

    #: This test's alias, unique per test (``"conformance_<hex>"``).
    alias: str
    #: This test's ``KEY_PREFIX``, unique per test and shared by its aliases.
    key_prefix: str
    #: ``broadcasts[self.alias]``.
    bus: Broadcast

    @abstractmethod
    async def break_connection(self) -> None:
        """Break the connections ``self.bus`` has open to the engine, the way a
        network failure would: without telling the client. Breaking other
        connections of this process as well is allowed. The kit calls it while
        ``self.bus`` has a subscription open, and once on a backend instance of
        its own (made with `connected_backend`, also for ``self.alias``)."""

    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        if not self.BACKEND:
            raise TypeError(f"{type(self).__name__} must set BACKEND to a backend's dotted path")
        token = uuid.uuid4().hex[:12]
        self.alias = f"conformance_{token}"
        self.key_prefix = f"c{token}"
        entry = {
            "BACKEND": self.BACKEND,
            "LOCATION": self.LOCATION,
            "OPTIONS": dict(self.OPTIONS),
            "KEY_PREFIX": self.key_prefix,
        }
        small = {**entry, "OPTIONS": {**self.OPTIONS, "MAX_QUEUE": 5}}
        retaining = {**entry, "OPTIONS": {**self.OPTIONS, **(self.RETENTION_OPTIONS or {})}}
        aliases = {"default": entry, self.alias: entry, f"{self.alias}_peer": entry}
        aliases[f"{self.alias}_small"] = small
        aliases[f"{self.alias}_retaining"] = retaining
        settings = override_settings(BROADCAST_BACKENDS=aliases)
        settings.enable()
        self.addCleanup(settings.disable)
        self.addAsyncCleanup(self._close, list(aliases))
        self.bus = broadcasts[self.alias]

    @staticmethod
    async def _close(aliases: list[str]) -> None:
        for alias in aliases:
            await broadcasts[alias].aclose()  # on every event loop, the bridge's too

    @property
    def peer(self) -> Broadcast:
        """Another alias on the same engine and ``KEY_PREFIX``, as another process
        would be; it connects when first used."""
        return broadcasts[f"{self.alias}_peer"]

    @property
    def small(self) -> Broadcast:
        """Like `bus`, with ``MAX_QUEUE`` 5."""
        return broadcasts[f"{self.alias}_small"]

    @property
    def retaining(self) -> Broadcast:
        """Like `bus`, with `RETENTION_OPTIONS`."""
        return broadcasts[f"{self.alias}_retaining"]

    @property
    def keeps_history(self) -> bool:
        return self.bus.supports_history

    # -- waiting, always bounded ---------------------------------------------

    async def drain(self, sub: Subscription, count: int) -> list[Event]:
        """The next ``count`` events of ``sub``."""
        return [await sub.get(TIMEOUT) for _ in range(count)]

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        """Wait until ``condition()`` holds; fail after `TIMEOUT`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while not condition():
            if loop.time() > deadline:
                self.fail(f"no {what} within {TIMEOUT}s")
            await asyncio.sleep(0.005)

    async def outage(self) -> None:
        """`break_connection` and wait until ``self.bus`` has noticed."""
        before = self.bus.stats()["disconnects"]
        await self.break_connection()
        await self.until(
            lambda: self.bus.stats()["disconnects"] > before,
            "disconnect counted after break_connection() (receive() must raise on a lost "
            "connection)",
        )

    async def reconnected(self) -> None:
        """Wait until ``self.bus`` has reconnected at least once."""
        await self.until(lambda: self.bus.stats()["reconnects"] >= 1, "reconnect")

    def assert_in_order(self, events: list[Event]) -> None:
        """Ids (on a backend with history) increase strictly: no repeat, no reordering."""
        if self.keeps_history:
            order = self.bus.config.backend_class(self.bus.config).id_order
            keys = [order(event.id or "") for event in events]
            self.assertEqual(keys, sorted(set(keys)), "event ids must increase strictly")

    async def refused_without_history(self, channel: str) -> bool:
        """On a backend without history, check that ``since=``, ``history=`` and
        ``history()`` are refused up front, and return ``True``."""
        if self.keeps_history:
            return False
        with self.assertRaisesRegex(HistoryNotSupported, "keeps no history"):
            self.bus.subscribe(channel, history=3)
        with self.assertRaises(HistoryNotSupported):
            self.bus.subscribe(channel, since="1-0")
        with self.assertRaises(HistoryNotSupported):
            await self.bus.ahistory(channel)
        self.assertEqual(self.bus.stats()["subscribers"], 0)
        return True

    # -- the backend itself --------------------------------------------------

    async def connected_backend(self, bus: Broadcast | None = None) -> BaseBackend:
        """A connected instance of the backend, configured as ``bus`` (default
        ``self.bus``); closed at the end of the test."""
        config = (bus or self.bus).config
        backend = config.backend_class(config)
        await asyncio.wait_for(backend.connect(), TIMEOUT)
        self.addAsyncCleanup(backend.close)
        return backend

    async def receive_raw(self, backend: BaseBackend, count: int) -> list[RawEvent]:
        """At least ``count`` events from ``backend.receive()``."""
        events: list[RawEvent] = []
        while len(events) < count:
            events.extend(await asyncio.wait_for(backend.receive(), TIMEOUT))
        return events

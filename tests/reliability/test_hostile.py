"""Hostile input, property-based: raw bytes injected straight into the engine.

Hypothesis generates payloads that another program (or an attacker with
access to the engine) writes where a subscriber reads: ``PUBLISH`` on Redis
pub/sub, ``XADD`` (any fields) on Redis Streams, ``NOTIFY`` with any text and
rows with any payload (announced as the backend does) on PostgreSQL. After
each, a good event is published through the bus. Each hostile payload must be
delivered intact (it happens to decode) or skipped; the good event must always
arrive, after it; the reader never dies (no reconnection). Channel names are
fuzzed too: a publish either works or raises one clear error.

The bus and its subscription live on an event loop in a thread of their own
for the whole test, so examples do not pay for connecting.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import psycopg
import pytest
import redis
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_broadcaster import Broadcast, Subscription
from django_broadcaster.backends.postgres.statements import HISTORY_TABLE
from django_broadcaster.config import create_broadcast
from django_broadcaster.exceptions import InvalidChannelName, MessageTooLarge
from tests.support.backends import CONFORMANCE_BACKENDS, REDIS_URL
from tests.support.waiting import TIMEOUT

from .scale import scaled

T = TypeVar("T")
EXAMPLES = scaled(150, 2000)
CHANNEL = "hostile"
BACKENDS = ["redis", "redis-stream", "postgres"]
NOT_DECODED = object()


class Harness:
    """A bus subscribed to `CHANNEL` on a loop of its own, and raw engine access."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        entry = dict(CONFORMANCE_BACKENDS[name])
        database = connection.settings_dict["NAME"]
        #: The test database (with the history table), for raw rows.
        self.database_url = f"postgresql://postgres@127.0.0.1:5432/{database}"
        if name == "postgres":
            entry["LOCATION"] = self.database_url
        entry["KEY_PREFIX"] = f"x{uuid.uuid4().hex[:10]}"
        self.bus: Broadcast = create_broadcast("default", entry)
        self.sub: Subscription = self.bus.subscribe(CHANNEL)
        self.run(self.sub.__aenter__())
        self.backend = self.run(self._backend())
        self.good = 0

    async def _backend(self) -> Any:
        return self.bus.hubs.current().backend

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(3 * TIMEOUT)

    def close(self) -> None:
        self.run(self.sub.__aexit__(None, None, None))
        self.run(self.bus.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def expect(self, raw: bytes) -> object:
        """What the subscriber must hand out for ``raw``: its decoding, or nothing."""
        try:
            return self.bus.serializer.loads(raw)
        except Exception:
            return NOT_DECODED

    def followed_by_good(self, expected: list[object]) -> None:
        """Publish a good event; what arrives before it must be ``expected``."""
        self.good += 1
        marker = ["good", self.good]

        async def check() -> list[object]:
            await self.bus.apublish(CHANNEL, marker)
            got: list[object] = []
            while True:
                message = (await self.sub.get(TIMEOUT)).message
                if message == marker:
                    return got
                got.append(message)

        assert self.run(check()) == [e for e in expected if e is not NOT_DECODED]
        assert self.bus.stats()["disconnects"] == 0, "the reader died"


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    if request.param == "postgres":
        request.getfixturevalue("postgres_table")
    h = Harness(request.param)
    try:
        yield h
    finally:
        h.close()


def inject(h: Harness, raw: bytes, fields: list[tuple[bytes, bytes]], note: str) -> list[object]:
    """Write ``raw`` where the subscriber reads, as another program could; what
    the subscriber must hand out for it."""
    wire = h.backend.wire_name(CHANNEL)
    if h.name == "redis":
        with redis.Redis.from_url(REDIS_URL) as client:
            client.publish(wire, raw)
        return [h.expect(raw)]
    if h.name == "redis-stream":
        with redis.Redis.from_url(REDIS_URL) as client:
            client.xadd(wire, {b"data": raw})
            foreign = dict(fields or [(b"other", raw)])  # any fields, maybe not "data"
            client.xadd(wire, foreign)  # type: ignore[arg-type]
        # An entry without the backend's field reads as an empty payload: never decodes.
        return [h.expect(raw), h.expect(foreign.get(b"data", b""))]
    with psycopg.connect(h.database_url, autocommit=True) as conn:
        notify = h.backend.notify_channel(CHANNEL)
        row = conn.execute(
            f"INSERT INTO {HISTORY_TABLE} (channel, payload) VALUES (%s, %s) RETURNING id",
            (wire, raw),
        ).fetchone()
        assert row is not None
        conn.execute("SELECT pg_notify(%s, %s)", (notify, f"@{row[0]}"))
        conn.execute("SELECT pg_notify(%s, %s)", (notify, note))
    # The row, announced as the backend does; then the foreign notification, which
    # is handed out as an id-less event when it is no "@<id>".
    announced = h.expect(note.encode()) if not note.startswith("@") else NOT_DECODED
    return [h.expect(raw), announced]


payloads = st.one_of(
    st.binary(max_size=300),
    st.from_regex(rb"\A[\[\]{}\",:0-9.eE+\-a-z \\]{0,40}\Z"),  # near-JSON
    st.builds(lambda s: s.encode(), st.text(max_size=50)),
)
stream_fields = st.lists(st.tuples(st.binary(max_size=10), st.binary(max_size=30)), max_size=3)
notes = st.text(
    alphabet=st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=60
)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=payloads, fields=stream_fields, note=notes)
def test_hostile_bytes_never_kill_the_reader(
    harness: Harness, raw: bytes, fields: list[tuple[bytes, bytes]], note: str
) -> None:
    harness.followed_by_good(inject(harness, raw, fields, note))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(channel=st.text(max_size=300))
def test_any_channel_name_is_published_or_refused_clearly(harness: Harness, channel: str) -> None:
    async def attempt() -> str | None:
        try:
            await harness.bus.apublish(channel, "x")
        except (InvalidChannelName, MessageTooLarge, ValueError) as exc:
            return str(exc)
        return None

    error = harness.run(attempt())
    if error is not None:
        assert "\n" not in error and error, error
    harness.followed_by_good([])

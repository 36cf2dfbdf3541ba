"""OPTIONS["SIGNING_KEYS"]: only events signed with a listed key, for their channel, arrive.

Forged events are written straight into each real engine, as someone with access
to it would: ``PUBLISH`` and ``XADD`` into Redis, ``INSERT`` and ``NOTIFY`` into
PostgreSQL, and the memory backend's own store. They are dropped live and from
``history()``, counted in ``stats()["forged"]`` and logged without their content;
events published by the app still arrive.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis
from django.db import connections
from psycopg import sql

from django_broadcaster import Broadcast
from django_broadcaster.backends.memory import MemoryBackend
from django_broadcaster.backends.postgres import HISTORY_TABLE
from django_broadcaster.layers import BroadcastChannelLayer
from django_broadcaster.layers.names import PROCESS_TOPIC, client_of
from django_broadcaster.signing import MARK, Signer

from .support.backends import REDIS_URL, make_bus
from .support.waiting import TIMEOUT, eventually

BACKENDS = ["memory", "redis", "redis-stream", "postgres"]
HISTORY_BACKENDS = ["memory", "redis-stream", "postgres"]
KEY = "current-signing-key-0123456789"
OLD_KEY = "previous-signing-key-012345678"
WRONG_KEY = "somebody-elses-key-0123456789"
#: In every forged payload: must never show up in the logs.
SECRET = "FORGED-CONTENT-7f3a"


class Engine:
    """Writes payloads into a bus's engine behind its back."""

    def __init__(self, bus: Broadcast) -> None:
        self.bus = bus
        self.backend = bus.hubs.current().backend
        self.redis: aioredis.Redis | None = None
        self.postgres: psycopg.AsyncConnection[Any] | None = None
        self.memory: MemoryBackend | None = None

    async def __aenter__(self) -> Engine:
        kind = type(self.backend).__name__
        if kind.startswith("Redis"):
            self.redis = aioredis.Redis.from_url(REDIS_URL, protocol=2)
        elif kind == "PostgresBackend":
            s = connections["default"].settings_dict
            url = f"postgresql://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"
            self.postgres = await psycopg.AsyncConnection.connect(url, autocommit=True)
        else:
            self.memory = MemoryBackend(self.bus.config)
            await self.memory.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.redis is not None:
            await self.redis.aclose()
        if self.postgres is not None:
            await self.postgres.close()
        if self.memory is not None:
            await self.memory.close()

    async def put(self, channel: str, payload: bytes) -> None:
        wire = self.backend.wire_name(channel)
        if self.redis is not None:
            if self.backend.supports_history:
                await self.redis.xadd(wire, {b"data": payload})
            else:
                await self.redis.publish(wire, payload)
        elif self.postgres is not None:
            cursor = await self.postgres.execute(
                sql.SQL("INSERT INTO {} (channel, payload) VALUES (%s, %s) RETURNING id").format(
                    sql.Identifier(HISTORY_TABLE)
                ),
                (wire, payload),
            )
            row = await cursor.fetchone()
            assert row is not None
            notify = self.backend.notify_channel(channel)  # type: ignore[attr-defined]
            await self.postgres.execute("SELECT pg_notify(%s, %s)", (notify, f"@{row[0]}"))
        else:
            assert self.memory is not None
            await self.memory.publish(channel, payload)


def forgeries(channel: str) -> list[bytes]:
    """What an attacker with engine access but without the key can write on ``channel``."""
    body = f'{{"forged":"{SECRET}"}}'.encode()
    genuine = Signer([KEY.encode()]).sign(channel, body)
    return [
        body,  # unsigned
        Signer([WRONG_KEY.encode()]).sign(channel, body),  # signed with another key
        genuine.replace(b"forged", b"FORGED"),  # a signed event altered
        Signer([KEY.encode()]).sign("elsewhere", body),  # signed for another channel
        genuine[: len(MARK) + 10],  # a truncated header
    ]


@pytest.fixture
async def signed(name: str) -> AsyncIterator[Broadcast]:
    """A bus on backend ``name`` (the test's parameter) signing with `KEY`."""
    bus = make_bus(name, OPTIONS={"SIGNING_KEYS": [KEY, OLD_KEY]})
    yield bus
    await bus.aclose()


@pytest.mark.parametrize("name", BACKENDS)
async def test_forged_events_are_dropped_counted_and_logged_without_content(
    signed: Broadcast, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "django_broadcaster")
    async with signed.subscribe("orders") as sub, Engine(signed) as engine:
        for payload in forgeries("orders"):
            await engine.put("orders", payload)
        event_id = await signed.apublish("orders", {"genuine": 1})
        event = await sub.get(TIMEOUT)
    assert (event.message, event.id) == ({"genuine": 1}, event_id)
    assert signed.stats()["forged"] == 5
    assert signed.stats()["received"] == 1
    assert caplog.text.count("dropped an event on channel 'orders' of 'default'") == 5
    assert caplog.text.count("it carries no signature") == 2
    assert caplog.text.count("its signature matches none of SIGNING_KEYS") == 3
    assert SECRET not in caplog.text


@pytest.mark.parametrize("name", HISTORY_BACKENDS)
async def test_history_drops_forged_events(signed: Broadcast) -> None:
    async with Engine(signed) as engine:
        await signed.apublish("ledger", "first")
        for payload in forgeries("ledger"):
            await engine.put("ledger", payload)
        await signed.apublish("ledger", "second")
    events = await signed.ahistory("ledger")
    assert [event.message for event in events] == ["first", "second"]
    assert signed.stats()["forged"] == 5


@pytest.mark.parametrize("name", HISTORY_BACKENDS)
async def test_history_pages_read_on_past_forged_events(signed: Broadcast) -> None:
    """A page (``oldest_first=True``) holds ``limit`` genuine events when there are that
    many, forged ones between them dropped: a short page still means the end."""
    async with Engine(signed) as engine:
        first = await signed.apublish("pages", "first")
        for payload in forgeries("pages"):
            await engine.put("pages", payload)
        await signed.apublish("pages", "second")
        await signed.apublish("pages", "third")
    page = await signed.ahistory("pages", limit=2, oldest_first=True)
    assert [event.message for event in page] == ["first", "second"]
    page = await signed.ahistory("pages", since=first, limit=2, oldest_first=True)
    assert [event.message for event in page] == ["second", "third"]
    assert await signed.ahistory("pages", since=page[-1].id, limit=2, oldest_first=True) == []


@pytest.mark.parametrize("name", BACKENDS)
async def test_rotation_old_key_verifies_newest_key_signs(name: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    before = make_bus(name, KEY_PREFIX=prefix, OPTIONS={"SIGNING_KEYS": [OLD_KEY]})
    during = make_bus(name, KEY_PREFIX=prefix, OPTIONS={"SIGNING_KEYS": [KEY, OLD_KEY]})
    after = make_bus(name, KEY_PREFIX=prefix, OPTIONS={"SIGNING_KEYS": [KEY]})
    try:
        async with during.subscribe("news") as on_during, after.subscribe("news") as on_after:
            await before.apublish("news", "old key")
            assert (await on_during.get(TIMEOUT)).message == "old key"
            await during.apublish("news", "new key")
            assert (await on_during.get(TIMEOUT)).message == "new key"
            # The first thing "after" gets is the event signed with the newest key.
            assert (await on_after.get(TIMEOUT)).message == "new key"
        assert after.stats()["forged"] == 1
        assert during.stats()["forged"] == 0
    finally:
        for bus in (before, during, after):
            await bus.aclose()


@pytest.mark.parametrize("name", BACKENDS)
async def test_without_signing_keys_nothing_changes(name: str) -> None:
    """An unsigned event injected into the engine is delivered, as it always was."""
    bus = make_bus(name)
    try:
        async with bus.subscribe("plain") as sub, Engine(bus) as engine:
            await engine.put("plain", b'{"injected":true}')
            assert (await sub.get(TIMEOUT)).message == {"injected": True}
        assert bus.stats()["forged"] == 0
        if bus.supports_history:
            await bus.apublish("plain", {"v": 1})
            raw = await bus.hubs.current().backend.history("plain", None, None)
            assert raw[-1].payload == b'{"v":1}'
    finally:
        await bus.aclose()


@pytest.mark.parametrize("name", HISTORY_BACKENDS)
async def test_signed_payload_is_compact_and_keeps_text_as_text(signed: Broadcast) -> None:
    await signed.apublish("compact", {"v": "é"})
    (raw,) = await signed.hubs.current().backend.history("compact", None, None)
    body = '{"v":"é"}'.encode()
    assert raw.payload.endswith(body)
    header = raw.payload[: -len(body)]
    assert header.startswith(MARK) and len(header) == 46 and header.isascii()
    assert raw.payload.decode().endswith('{"v":"é"}')  # text stays text (NOTIFY carries it as is)


@pytest.mark.parametrize("name", BACKENDS)
async def test_msgpack_payloads_are_signed_and_verified(name: str) -> None:
    bus = make_bus(name, OPTIONS={"SIGNING_KEYS": [KEY], "SERIALIZER": "msgpack"})
    try:
        async with bus.subscribe("bin") as sub, Engine(bus) as engine:
            await engine.put("bin", Signer([WRONG_KEY.encode()]).sign("bin", b"\x81\xa1a\x01"))
            await bus.apublish("bin", {"blob": b"\x00\xff\x00"})
            assert (await sub.get(TIMEOUT)).message == {"blob": b"\x00\xff\x00"}
        assert bus.stats()["forged"] == 1
    finally:
        await bus.aclose()


@pytest.mark.parametrize("name", BACKENDS)
async def test_channel_layer_traffic_is_signed_and_forged_envelopes_dropped(name: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    fronts = [make_bus(name, KEY_PREFIX=prefix, OPTIONS={"SIGNING_KEYS": [KEY]}) for _ in range(2)]
    a, b = (BroadcastChannelLayer(using=front) for front in fronts)
    try:
        channel = await a.new_channel()
        await a.group_add("room", channel)
        async with Engine(fronts[0]) as engine:
            forged = f'{{"op":"send","to":"{channel}","message":{{"type":"{SECRET}"}}}}'
            await engine.put(PROCESS_TOPIC + client_of(channel), forged.encode())
            await engine.put("room", f'{{"type":"{SECRET}"}}'.encode())
        await b.send(channel, {"type": "direct"})
        await b.group_send("room", {"type": "group"})
        received = [(await a.receive(channel))["type"] for _ in range(2)]
        assert sorted(received) == ["direct", "group"]
        await eventually(lambda: fronts[0].stats()["forged"] == 2)
    finally:
        for layer in (a, b):
            await layer.close()
        for front in fronts:
            await front.aclose()


@pytest.mark.parametrize("key", [b"k" * 16, b"k" * 64, b"x" * 100])
def test_signatures_are_standard_hmac_sha256(key: bytes) -> None:
    """The tag is RFC 2104 HMAC-SHA256 over ``channel NUL payload``, whatever the key
    length, so another implementation can sign or verify events."""
    import binascii
    import hashlib
    import hmac

    from django_broadcaster.signing import MARK, Signer

    expected = hmac.new(key, b"chat\x00payload", hashlib.sha256).digest()
    signed = Signer([key]).sign("chat", b"payload")
    assert signed == MARK + binascii.b2a_base64(expected, newline=False) + b"payload"

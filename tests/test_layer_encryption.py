"""The channel layer's ``symmetric_encryption_keys``: messages cross the bus encrypted.

Two layers ("hosts") on one real engine exchange messages; what the engine holds
is read back raw and never contains the plaintext; keys rotate; a layer with
another key drops what it cannot decrypt and goes on working.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.test import override_settings
from psycopg import sql

from django_broadcaster import Broadcast
from django_broadcaster.backends.postgres import HISTORY_TABLE
from django_broadcaster.layers import BroadcastChannelLayer
from django_broadcaster.layers.checks import check_channel_layers

from .support.backends import REDIS_URL, make_bus
from .support.waiting import TIMEOUT, eventually, nothing_on, receive

KEY = "layer-secret-number-one-0123456"
NEW_KEY = "layer-secret-number-two-0123456"
WRONG_KEY = "not-the-layer-secret-0123456789"
#: In every message sent: must never be readable on the engine or in the logs.
PLAINTEXT = "attack-at-dawn-5c1e"


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def fronts(backend_name: str, prefix: str) -> AsyncIterator[list[Broadcast]]:
    """Three `Broadcast` fronts on one engine and KEY_PREFIX, as three hosts would have."""
    made = [make_bus(backend_name, KEY_PREFIX=prefix) for _ in range(3)]
    yield made
    for front in made:
        await front.aclose()


def layer_on(front: Broadcast, *keys: str) -> BroadcastChannelLayer:
    return BroadcastChannelLayer(using=front, symmetric_encryption_keys=list(keys))


async def exchange(a: BroadcastChannelLayer, b: BroadcastChannelLayer) -> None:
    """Every kind of layer traffic from ``b`` to ``a``: direct, group, normal channel."""
    channel = await a.new_channel()
    await b.group_add("room", channel)  # a request that travels to a's process
    await eventually(lambda: a.status()["memberships"] == 1)
    await b.send(channel, {"type": "direct", "text": PLAINTEXT})
    assert await receive(a, channel) == {"type": "direct", "text": PLAINTEXT}
    await b.group_send("room", {"type": "group", "text": PLAINTEXT})
    assert await receive(a, channel) == {"type": "group", "text": PLAINTEXT}
    job = asyncio.create_task(a.receive("jobs"))
    await eventually(lambda: a.status()["subscriptions"] == 3)  # its own, "room", "jobs"
    await b.send("jobs", {"type": "normal", "text": PLAINTEXT})
    assert await asyncio.wait_for(job, TIMEOUT) == {"type": "normal", "text": PLAINTEXT}


class RawRecorder:
    """Everything the engine holds or carries under ``prefix``, read without the layer."""

    def __init__(self, backend_name: str, prefix: str) -> None:
        self.backend_name = backend_name
        self.prefix = prefix
        self.redis = aioredis.Redis.from_url(REDIS_URL, protocol=2)
        self.pubsub = self.redis.pubsub()
        self.carried: list[bytes] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.backend_name == "redis":
            await self.pubsub.psubscribe(f"{self.prefix}:*")
            self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.pubsub.listen():
            if message["type"] == "pmessage":
                self.carried.append(message["data"])

    async def held(self) -> list[bytes]:
        """The raw payloads seen so far (Redis pub/sub) or stored (streams, PostgreSQL)."""
        if self.backend_name == "redis-stream":
            payloads = []
            async for key in self.redis.scan_iter(f"{self.prefix}:*"):
                payloads.extend(fields[b"data"] for _, fields in await self.redis.xrange(key))
            return payloads
        if self.backend_name == "postgres":
            s = connections["default"].settings_dict
            url = f"postgresql://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"
            async with await psycopg.AsyncConnection.connect(url) as conn:
                cursor = await conn.execute(
                    sql.SQL("SELECT payload FROM {} WHERE channel LIKE %s").format(
                        sql.Identifier(HISTORY_TABLE)
                    ),
                    (f"{self.prefix}:%",),
                )
                return [bytes(row[0]) for row in await cursor.fetchall()]
        return list(self.carried)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.pubsub.aclose()
        await self.redis.aclose()


async def test_encrypted_messages_round_trip_and_the_engine_holds_no_plaintext(
    fronts: list[Broadcast], backend_name: str, prefix: str
) -> None:
    recorder = RawRecorder(backend_name, prefix)
    await recorder.start()
    a, b = layer_on(fronts[0], KEY), layer_on(fronts[1], KEY)
    try:
        await exchange(a, b)
        held = await recorder.held()
    finally:
        await recorder.close()
        await a.close()
        await b.close()
    if backend_name != "memory":
        assert len(held) >= 4  # the group_add request, and one per message
        assert not [payload for payload in held if PLAINTEXT.encode() in payload]
        assert not [payload for payload in held if b"room" in payload]


async def test_a_rotated_key_list_reads_old_messages(fronts: list[Broadcast]) -> None:
    old = layer_on(fronts[0], KEY)
    rotated = layer_on(fronts[1], NEW_KEY, KEY)
    try:
        await exchange(rotated, old)  # written with the old key, read by the new list
        # The rotated layer writes with its first key: the old one cannot read that.
        channel = await old.new_channel()
        await rotated.send(channel, {"type": "direct"})
        await eventually(lambda: old.status()["undecryptable"] == 1)
        assert await nothing_on(old, channel)
    finally:
        await old.close()
        await rotated.close()


async def test_a_wrong_key_cannot_read_and_the_consumer_goes_on(
    fronts: list[Broadcast], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "django_broadcaster.layers")
    sender, stranger = layer_on(fronts[0], KEY), layer_on(fronts[1], WRONG_KEY)
    try:
        channel = await stranger.new_channel()
        await stranger.group_add("room", channel)
        await sender.group_send("room", {"type": "secret", "text": PLAINTEXT})
        await sender.send(channel, {"type": "secret", "text": PLAINTEXT})
        # Unencrypted messages from outside the layer are refused too.
        await fronts[2].apublish("room", {"type": "plain"})
        await eventually(lambda: stranger.status()["undecryptable"] == 3)
        assert await nothing_on(stranger, channel)
        assert caplog.text.count("no key of symmetric_encryption_keys decrypts it") == 2
        assert caplog.text.count("it is not encrypted") == 1
        assert PLAINTEXT not in caplog.text
        # Still serving: its own messages arrive.
        await stranger.group_send("room", {"type": "own"})
        assert (await receive(stranger, channel))["type"] == "own"
    finally:
        await sender.close()
        await stranger.close()


async def test_plain_subscribers_see_only_tokens(bus: Broadcast) -> None:
    layer = layer_on(bus, KEY)
    try:
        async with bus.subscribe("room") as sub:
            await layer.group_send("room", {"type": "secret", "text": PLAINTEXT})
            token = (await sub.get(TIMEOUT)).message
        assert isinstance(token, str)
        assert PLAINTEXT not in token
    finally:
        await layer.close()


# -- configuration -------------------------------------------------------------------

PATH = "django_broadcaster.layers.BroadcastChannelLayer"


def check_messages(config: dict[str, Any]) -> list[str]:
    with override_settings(CHANNEL_LAYERS={"enc": {"BACKEND": PATH, "CONFIG": config}}):
        return [f"{m.id} {m.msg} | {m.hint}" for m in check_channel_layers()]


@pytest.fixture
def without_cryptography() -> Iterator[None]:
    """The interpreter as it is when ``cryptography`` is not installed."""
    saved = {name: module for name, module in sys.modules.items() if name == "cryptography"}
    sys.modules["cryptography"] = None  # type: ignore[assignment]
    yield
    del sys.modules["cryptography"]
    sys.modules.update(saved)


def test_keys_are_checked_without_echoing_them() -> None:
    assert check_messages({"symmetric_encryption_keys": [KEY]}) == []
    for wrong in ("x" * 40, [], ["short-secret"], [KEY, 42]):
        (message,) = check_messages({"symmetric_encryption_keys": wrong})
        assert message.startswith(
            "django_broadcaster.E010 CHANNEL_LAYERS['enc']['CONFIG']: symmetric_encryption_keys "
            "must be a non-empty list of secret keys (str or bytes, 16 characters or more)"
        )
        assert "short-secret" not in message and "x" * 40 not in message
    with pytest.raises(ImproperlyConfigured, match="symmetric_encryption_keys must be"):
        BroadcastChannelLayer(symmetric_encryption_keys=["short-secret"])


def test_keys_without_cryptography_are_a_clear_error(without_cryptography: None) -> None:
    assert check_messages({"symmetric_encryption_keys": [KEY]}) == [
        "django_broadcaster.E010 CHANNEL_LAYERS['enc']['CONFIG']: symmetric_encryption_keys "
        "needs the 'cryptography' package, which is not installed | "
        'pip install "django-broadcast-bus[crypto]"'
    ]
    with pytest.raises(ImproperlyConfigured, match="needs the 'cryptography' package"):
        BroadcastChannelLayer(symmetric_encryption_keys=[KEY])
    assert check_messages({}) == []  # without keys the layer does not need it
    BroadcastChannelLayer()

"""Channel names starting with ``_broadcaster:`` are django-broadcaster's own.

The channel layer carries consumers' direct messages and remote group requests on
such channels; if the public API accepted their names, any endpoint taking a
caller-chosen channel name (an SSE view, say) would let a caller read them or
inject into them.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from django.test import RequestFactory

from django_broadcaster import Broadcast, InvalidChannelName
from django_broadcaster.events import RESERVED_PREFIX, validate_channel_name
from django_broadcaster.http import EventStreamResponse
from django_broadcaster.layers import BroadcastChannelLayer
from django_broadcaster.layers.names import PROCESS_TOPIC, QUEUE_TOPIC, client_of

from .support.backends import make_bus

TIMEOUT = 10
REFUSED = r"names starting with '_broadcaster:' are reserved for django-broadcaster's internal use"


def test_the_reserved_prefix_is_refused_in_one_clear_line() -> None:
    with pytest.raises(InvalidChannelName) as caught:
        validate_channel_name(RESERVED_PREFIX + "anything")
    assert str(caught.value) == (
        "invalid channel name '_broadcaster:anything': names starting with '_broadcaster:' "
        "are reserved for django-broadcaster's internal use; choose another name"
    )
    assert validate_channel_name("broadcaster:news") == "broadcaster:news"
    assert validate_channel_name("layer:p:abc") == "layer:p:abc"


async def test_the_layer_topics_cannot_be_used_through_the_public_api(bus: Broadcast) -> None:
    layer = BroadcastChannelLayer(using=bus)
    try:
        channel = await layer.new_channel()
        for topic in (PROCESS_TOPIC + client_of(channel), QUEUE_TOPIC + "jobs"):
            with pytest.raises(InvalidChannelName, match=REFUSED):
                bus.subscribe(topic)
            with pytest.raises(InvalidChannelName, match=REFUSED):
                await bus.apublish(topic, {"op": "send", "to": channel, "message": {}})
            with pytest.raises(InvalidChannelName, match=REFUSED):
                await asyncio.to_thread(bus.publish, topic, {})
            if bus.supports_history:
                with pytest.raises(InvalidChannelName, match=REFUSED):
                    await bus.ahistory(topic)
            with pytest.raises(InvalidChannelName, match=REFUSED):
                EventStreamResponse(RequestFactory().get("/events"), "news", topic)
        # The layer itself still uses them.
        await layer.send(channel, {"type": "hello"})
        assert await asyncio.wait_for(layer.receive(channel), TIMEOUT) == {"type": "hello"}
    finally:
        await layer.close()


async def test_a_direct_message_is_not_readable_under_its_old_name(backend_name: str) -> None:
    """Before the namespace, ``subscribe("layer:p:<client>")`` read other consumers'
    direct messages; that name is now an ordinary channel the layer never uses."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    fronts = [make_bus(backend_name, KEY_PREFIX=prefix) for _ in range(2)]
    a, b = (BroadcastChannelLayer(using=front) for front in fronts)
    try:
        channel = await a.new_channel()
        async with fronts[1].subscribe("layer:p:" + client_of(channel)) as snoop:
            await b.send(channel, {"type": "private"})
            assert await asyncio.wait_for(a.receive(channel), TIMEOUT) == {"type": "private"}
            with pytest.raises(asyncio.TimeoutError):
                await snoop.get(0.3)
    finally:
        for layer in (a, b):
            await layer.close()
        for front in fronts:
            await front.aclose()

"""The layer hands a message straight to a receive() that waits for it: a receive()
cancelled after it was handed one, before it ran, gives it back to the channel,
first in line, and each receiver still gets its own copy of a group message."""

from __future__ import annotations

import asyncio

import pytest

from django_broadcaster import Broadcast
from django_broadcaster.layers import BroadcastChannelLayer

from .support.waiting import eventually, receive


async def test_a_message_handed_to_a_cancelled_receive_goes_to_the_next(bus: Broadcast) -> None:
    layer = BroadcastChannelLayer(using=bus)
    channel = await layer.new_channel()
    waiting = asyncio.ensure_future(layer.receive(channel))
    await eventually(lambda: layer.status()["channels"] == 1 and not waiting.done())
    await asyncio.sleep(0.05)  # the receive() waits now
    # No await in between: the waiting receive() is handed the first message and
    # cancelled before it runs; the second message is queued meanwhile.
    await layer.send(channel, {"type": "m", "n": 1})
    waiting.cancel()
    await layer.send(channel, {"type": "m", "n": 2})
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert (await receive(layer, channel))["n"] == 1
    assert (await receive(layer, channel))["n"] == 2
    assert layer.status()["queued"] == 0
    await layer.close()


async def test_waiting_members_get_their_own_copies(bus: Broadcast) -> None:
    layer = BroadcastChannelLayer(using=bus)
    members = [await layer.new_channel() for _ in range(3)]
    for member in members:
        await layer.group_add("g", member)
    waiting = [asyncio.ensure_future(receive(layer, member)) for member in members]
    await asyncio.sleep(0.05)  # every receive() waits now
    await layer.group_send("g", {"type": "m", "text": "hi"})
    first, *others = await asyncio.gather(*waiting)
    first["type"] = "changed"
    first.pop("text")
    assert others == [{"type": "m", "text": "hi"}] * 2
    await layer.close()

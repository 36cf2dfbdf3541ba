"""Consumers for the channel layer tests, run through ``WebsocketCommunicator``."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.generic.websocket import AsyncJsonWebsocketConsumer, JsonWebsocketConsumer

ROOM = "chat.lobby"


class RoomConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """A chat room: what a client sends goes to everyone in ``ROOM``."""

    async def connect(self) -> None:
        await self.channel_layer.group_add(ROOM, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(ROOM, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.channel_layer.group_send(ROOM, {"type": "chat.message", "text": content["text"]})

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send_json({"text": event["text"]})


class ForgetfulConsumer(RoomConsumer):
    """Never leaves its group: the layer must release it once it goes idle."""

    async def disconnect(self, code: int) -> None:
        pass


class SyncRoomConsumer(JsonWebsocketConsumer):  # type: ignore[misc]
    """The same room from a sync consumer, which reaches the layer via async_to_sync."""

    def connect(self) -> None:
        async_to_sync(self.channel_layer.group_add)(ROOM, self.channel_name)
        self.accept()

    def disconnect(self, code: int) -> None:
        async_to_sync(self.channel_layer.group_discard)(ROOM, self.channel_name)

    def receive_json(self, content: Any, **kwargs: Any) -> None:
        async_to_sync(self.channel_layer.group_send)(
            ROOM, {"type": "chat.message", "text": content["text"]}
        )

    def chat_message(self, event: dict[str, Any]) -> None:
        self.send_json({"text": event["text"]})


def app_for(alias: str, consumer: type = RoomConsumer) -> Any:
    """An ASGI app of ``consumer`` that uses channel layer ``alias``."""
    bound: Any = type(f"{consumer.__name__}On{alias}", (consumer,), {"channel_layer_alias": alias})
    return bound.as_asgi()

"""The chat's WebSocket: one consumer per browser tab, in the Channels group of its room.

The consumer never receives chat messages from its socket (the page posts them
to a plain sync view); it forwards to the socket whatever reaches its group,
from this process or any other host, and announces joins and leaves with
``group_send``, which the SSE activity feed receives as broadcast events.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .rooms import chat_presence, is_valid_room, room_channel, server_label

MAX_NAME_LENGTH = 40


class ChatConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None

    async def connect(self) -> None:
        self.room = self.scope["url_route"]["kwargs"]["room"]
        if not is_valid_room(self.room):
            await self.close()
            return
        query = parse_qs(self.scope.get("query_string", b"").decode())
        # No name yet: the page listens, and reconnects with a name once one is chosen.
        self.author = query.get("name", [""])[0].strip()[:MAX_NAME_LENGTH]
        self.via = server_label(*(self.scope.get("server") or (None, None)))
        self.group = room_channel(self.room)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        if self.author:
            await self._announce("joined")

    async def disconnect(self, code: int) -> None:
        if self.group is None:
            return
        if self.author:
            await self._announce("left")
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def _announce(self, action: str) -> None:
        message = chat_presence(self.room, self.author, action, self.via)
        await self.channel_layer.group_send(self.group, message)

    # Handlers for group messages, by "type" ("chat.message" -> chat_message).

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send_json(event)

    async def chat_presence(self, event: dict[str, Any]) -> None:
        await self.send_json(event)

"""Views of the SSE test app (mounted under ``/sse/`` by tests/support/urls.py).

The tests drive them through a real ASGI server, so publishing and looking at
the hub happen on the server's own event loop, through HTTP.
"""

from __future__ import annotations

import asyncio
import json

from channels.layers import get_channel_layer
from django.conf import settings
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from django_broadcaster import broadcasts
from django_broadcaster.http import EventStreamResponse

#: Channels no stream may read any more (``/sse/revoke/<channel>/``).
REVOKED: set[str] = set()


async def stream(request: HttpRequest, alias: str, channels: str) -> StreamingHttpResponse:
    """``/sse/<alias>/stream/<a,b,...>/?event_key=&keepalive=&retry=&deny=&replay_page=
    &byte_budget=&reauthorize_every=`` (absent ones are not passed)."""
    params = request.GET
    denied = set(params.getlist("deny"))
    numbers: dict[str, type[float] | type[int]] = {
        "keepalive": float,
        "retry": int,
        "replay_page": int,
        "byte_budget": int,
        "reauthorize_every": float,
    }
    options = {name: kind(params[name]) for name, kind in numbers.items() if name in params}
    return EventStreamResponse(
        request,
        *channels.split(","),
        using=alias,
        event_key=params.get("event_key"),
        authorize=lambda request, channel: channel not in denied and channel not in REVOKED,
        **options,  # type: ignore[arg-type]
    )


@csrf_exempt
async def revoke(request: HttpRequest, channel: str) -> JsonResponse:
    """POST: from now on no stream may read ``channel``."""
    REVOKED.add(channel)
    return JsonResponse({})


class PublicOnly(EventStreamResponse):
    """The overridable hook: only ``public.*`` channels."""

    def has_permission(self, request: HttpRequest, channel: str) -> bool:
        return channel.startswith("public.")


async def public_stream(request: HttpRequest, alias: str, channels: str) -> StreamingHttpResponse:
    return PublicOnly(request, *channels.split(","), using=alias)


@csrf_exempt
async def publish(request: HttpRequest, alias: str, channel: str) -> JsonResponse:
    """POST a JSON body: published on ``channel``; answers the event id."""
    event_id = await broadcasts[alias].apublish(channel, json.loads(request.body))
    return JsonResponse({"id": event_id})


@csrf_exempt
async def flood(request: HttpRequest, alias: str, channel: str) -> JsonResponse:
    """POST: publish on ``channel`` here, 50 at a time, ``?count=`` messages of ``?size=``
    characters; or for at most ``?seconds=``, while this process has subscribers of
    ``channel``. Answers how many were published."""
    params = request.GET
    front = broadcasts[alias]
    text = "x" * int(params.get("size", "10"))
    count = int(params.get("count", "0"))
    loop = asyncio.get_running_loop()
    until = loop.time() + float(params.get("seconds", "0"))
    published = 0
    while published < count or (
        loop.time() < until and channel in front.hubs.current().subscribers
    ):
        burst = min(50, count - published) if count else 50
        await asyncio.gather(*(front.apublish(channel, text) for _ in range(burst)))
        published += burst
    return JsonResponse({"published": published})


async def state(request: HttpRequest, alias: str) -> JsonResponse:
    """Local subscribers per channel and upstream subscriptions of this loop's hub, the
    tasks of this loop and, where ``CHANNEL_LAYERS`` is set, the layer's counters."""
    hub = broadcasts[alias].hubs.current()
    layer = get_channel_layer() if getattr(settings, "CHANNEL_LAYERS", None) else None
    return JsonResponse(
        {
            "subscribers": {c: len(s) for c, s in hub.subscribers.items()},
            "upstream": sorted(hub.upstream),
            "key_prefix": hub.backend.key_prefix,
            "tasks": len(asyncio.all_tasks()),
            "layer": layer.status() if layer is not None else None,
        }
    )

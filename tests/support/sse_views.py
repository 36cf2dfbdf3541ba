"""Views of the SSE test app (mounted under ``/sse/`` by tests/support/urls.py).

The tests drive them through a real ASGI server, so publishing and looking at
the hub happen on the server's own event loop, through HTTP.
"""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from django_broadcaster import broadcasts
from django_broadcaster.http import EventStreamResponse


async def stream(request: HttpRequest, alias: str, channels: str) -> StreamingHttpResponse:
    """``/sse/<alias>/stream/<a,b,...>/?event_key=&keepalive=&retry=&deny=``"""
    params = request.GET
    denied = set(params.getlist("deny"))
    return EventStreamResponse(
        request,
        *channels.split(","),
        using=alias,
        event_key=params.get("event_key"),
        keepalive=float(params["keepalive"]) if "keepalive" in params else None,
        retry=int(params["retry"]) if "retry" in params else None,
        authorize=lambda request, channel: channel not in denied,
    )


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


async def state(request: HttpRequest, alias: str) -> JsonResponse:
    """Local subscribers per channel and upstream subscriptions of this loop's hub."""
    hub = broadcasts[alias].hubs.current()
    return JsonResponse(
        {
            "subscribers": {c: len(s) for c, s in hub.subscribers.items()},
            "upstream": sorted(hub.upstream),
            "key_prefix": hub.backend.key_prefix,
        }
    )

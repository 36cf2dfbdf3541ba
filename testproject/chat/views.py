"""The chat's HTTP side: the room page, a sync view that publishes, an SSE stream.

``post_message`` is a plain synchronous view: ``broadcast.publish`` works from
sync code too, and what it publishes on ``chat.<room>`` reaches every consumer
in the Channels group ``chat.<room>`` and every SSE stream of the room, on every host.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from django_broadcaster import BackendUnavailable, broadcast
from django_broadcaster.http import EventStreamResponse

from .forms import MessageForm, RoomForm
from .rooms import chat_message, is_valid_room, recent_messages, room_channel, server_label


def _served_by(request: HttpRequest) -> str:
    return server_label(request.META.get("SERVER_NAME"), request.META.get("SERVER_PORT"))


def _backend() -> dict[str, str]:
    return {"name": broadcast.config.backend_class.__name__, "location": broadcast.safe_location}


def _check_room(room: str) -> None:
    if not is_valid_room(room):
        raise Http404("no such room")


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    form = RoomForm(request.GET or None)
    if form.is_valid():
        return redirect("chat:room", room=form.cleaned_data["room"])
    return render(
        request,
        "chat/index.html",
        {
            "form": form,
            "rooms": ["lobby", "random"],
            "backend": _backend(),
            "served_by": _served_by(request),
        },
    )


@require_GET
def room(request: HttpRequest, room: str) -> HttpResponse:
    _check_room(room)
    context = {
        "room": room,
        "messages": recent_messages(room),
        "backend": _backend(),
        "served_by": _served_by(request),
        "history_supported": broadcast.supports_history,
    }
    return render(request, "chat/room.html", context)


@require_POST
def post_message(request: HttpRequest, room: str) -> JsonResponse:
    _check_room(room)
    form = MessageForm(request.POST)
    if not form.is_valid():
        return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
    message = chat_message(room, via=_served_by(request), **form.cleaned_data)
    try:
        event_id = broadcast.publish(room_channel(room), message)
    except BackendUnavailable:
        return JsonResponse({"errors": {"__all__": [{"message": "the bus is down"}]}}, status=503)
    return JsonResponse({"id": event_id, "uid": message["uid"]}, status=201)


async def events(request: HttpRequest, room: str) -> EventStreamResponse:
    """The room's activity feed. It starts live; when the browser's EventSource
    reconnects it sends Last-Event-ID and the stream resumes right after that event."""
    _check_room(room)
    return EventStreamResponse(request, room_channel(room))

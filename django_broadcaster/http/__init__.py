"""Server-Sent Events: stream broadcast channels to browsers from an async view.

::

    from django_broadcaster.http import EventStreamResponse

    async def live(request, room):
        return EventStreamResponse(request, f"chat.{room}", event_key="type")

The response subscribes when the server starts sending it (on the server's
event loop, shared with every other request of the process), resumes from the
``Last-Event-ID`` header through history, sends keep-alive comments while the
channels are quiet, and unsubscribes when the client goes away.
"""

from .response import Authorize, EventStreamResponse

__all__ = ["Authorize", "EventStreamResponse"]

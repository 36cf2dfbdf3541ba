"""The ASGI application of the end-to-end reliability test: Django over HTTP (the
SSE views of tests/support/sse_urls.py) and the chat room consumer over WebSocket
at ``/ws/room/``, on the channel layer ``CHANNEL_LAYERS["default"]``."""

from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import get_asgi_application

http = get_asgi_application()  # sets Django up before the consumers are imported

from django.urls import path  # noqa: E402

from .layer_consumers import RoomConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {"http": http, "websocket": URLRouter([path("ws/room/", RoomConsumer.as_asgi())])}
)

"""The ASGI application the SSE tests serve (tests/support/urls.py routes ``/sse/``)."""

from django.core.asgi import get_asgi_application

application = get_asgi_application()

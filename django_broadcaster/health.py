"""A health check a load balancer can call: ``GET`` → JSON, 200 or 503.

.. code-block:: python

   # urls.py
   from django_broadcaster.health import health
   urlpatterns = [path("health/broadcast", health)]

It reports, for every configured alias, what this process's connections saw:
``"ok"``, or ``"outage"`` while a connection to the backend is lost and not yet
restored (``stats()``: more ``disconnects`` than ``reconnects``). Any outage
makes the answer 503. It opens no connection and sends nothing to a backend,
so it is cheap to call every second; an alias this process has not used yet
reports ``"ok"``.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse

from .metrics import configured


def report() -> dict[str, Any]:
    """``{"status": "ok" | "outage", "aliases": {alias: {"status": ..., counters}}}``."""
    aliases = {}
    for bus in configured():
        stats = bus.stats()
        down = stats["disconnects"] > stats["reconnects"]
        aliases[bus.alias] = {
            "status": "outage" if down else "ok",
            **{key: stats[key] for key in ("disconnects", "reconnects", "outage_seconds")},
        }
    healthy = all(entry["status"] == "ok" for entry in aliases.values())
    return {"status": "ok" if healthy else "outage", "aliases": aliases}


async def health(request: HttpRequest) -> JsonResponse:
    """The `report` as JSON: 200 when every alias is ``"ok"``, else 503."""
    body = report()
    return JsonResponse(body, status=200 if body["status"] == "ok" else 503)

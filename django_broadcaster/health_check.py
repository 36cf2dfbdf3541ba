"""A check for ``django-health-check`` (4.x): fails while an alias is in an outage.

.. code-block:: python

   # urls.py
   from health_check.views import HealthCheckView

   urlpatterns = [
       path("ht/", HealthCheckView.as_view(checks=[
           "health_check.checks.Database",
           "django_broadcaster.health_check.Broadcast",
       ])),
   ]

Like `django_broadcaster.health.health`, it reads what this process's
connections saw (`django_broadcaster.health.report`) and sends nothing to a
backend.
"""

from __future__ import annotations

import dataclasses

from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable

from .health import report


@dataclasses.dataclass
class Broadcast(HealthCheck):  # type: ignore[misc]  # django-health-check has no type hints
    """``ServiceUnavailable`` while ``alias`` (every alias when ``None``) is in an outage."""

    alias: str | None = None

    async def run(self) -> None:
        aliases = report()["aliases"]
        down = sorted(
            name
            for name, entry in aliases.items()
            if entry["status"] != "ok" and self.alias in (None, name)
        )
        if down:
            raise ServiceUnavailable(
                f"broadcast backend(s) in an outage: {', '.join(map(repr, down))}"
            )

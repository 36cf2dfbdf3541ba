"""The demo's settings (testproject/): DEBUG only on request, and even then no
``BROADCAST_URL`` password on Django's debug page."""

from __future__ import annotations

import json

from django.conf import settings

from .support.e2e_servers import manage, project_env

PASSWORD = "demo-s3cret"

#: Run by the demo's ``manage.py shell``: its DEBUG, and the debug page of an error.
REPORT = """
import json, sys
from django.conf import settings
from django.test import RequestFactory
from django.views.debug import technical_500_response
try:
    raise RuntimeError("boom")
except RuntimeError:
    page = technical_500_response(RequestFactory().get("/", HTTP_HOST="127.0.0.1"), *sys.exc_info())
print(json.dumps({"debug": settings.DEBUG, "page": page.content.decode()}))
"""


def demo_report(**env: str) -> dict[str, object]:
    report: dict[str, object] = json.loads(
        manage(project_env(**env), "shell", "-v", "0", "-c", REPORT)
    )
    return report


def test_demo_debug_is_off_unless_asked_for() -> None:
    assert demo_report()["debug"] is False
    assert demo_report(DJANGO_DEBUG="0")["debug"] is False
    assert demo_report(DJANGO_DEBUG="1")["debug"] is True


def test_demo_debug_page_hides_the_broadcast_url_password() -> None:
    host = settings.REDIS_URL.split("://", 1)[1]
    report = demo_report(DJANGO_DEBUG="1", BROADCAST_URL=f"redis://:{PASSWORD}@{host}")
    page = str(report["page"])
    assert "BROADCAST_BACKENDS" in page and "RuntimeError" in page
    assert PASSWORD not in page

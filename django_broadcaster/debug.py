"""Django's debug page and error reports without broadcast secrets.

Django's ``SafeExceptionReporterFilter`` hides settings by name (``PASSWORD``,
``SECRET_KEY``...), so ``BROADCAST_BACKENDS[...]["OPTIONS"]["CONNECTION_KWARGS"]
["password"]`` is already hidden, but a password inside a ``LOCATION`` URL is
not, nor are the local variables of the traceback's frames. Enable this
subclass with::

    DEFAULT_EXCEPTION_REPORTER_FILTER = "django_broadcaster.debug.SafeExceptionReporterFilter"
"""

from __future__ import annotations

from collections.abc import ItemsView
from pprint import pformat
from typing import Any

from django.http import HttpRequest
from django.views import debug

from .masking import is_secret_name, mask_text


class SafeExceptionReporterFilter(debug.SafeExceptionReporterFilter):
    """Django's filter, and also: URL passwords and ``password=...`` masked in every
    setting and ``request.META`` value, and in the traceback's local variables, where
    secret-looking names (``password``, ``token``, ``*KEY*``...) are hidden too."""

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        """``value`` with secrets masked (Django's rules, then passwords in text)."""
        if is_secret_name(key):
            return self.cleansed_substitute
        cleansed = super().cleanse_setting(key, value)  # recurses through this method
        return mask_text(cleansed) if isinstance(cleansed, str) else cleansed

    def get_traceback_frame_variables(
        self, request: HttpRequest | None, tb_frame: Any
    ) -> ItemsView[str, Any]:
        """Each local variable of ``tb_frame``, secrets masked, shown by its ``repr``."""
        variables = super().get_traceback_frame_variables(request, tb_frame)
        return {
            name: _Masked(self.cleanse_setting(name, value)) for name, value in variables
        }.items()


class _Masked:
    """A value whose ``repr`` (what the debug page shows) has its passwords masked."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return mask_text(pformat(self.value))

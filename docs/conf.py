"""Sphinx configuration for the django-broadcaster documentation.

Build with::

    .venv/bin/sphinx-build -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# autodoc imports the app, so Django must be set up first (with the test
# settings: they install the app and need no running service to import).
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.support.settings")

import django  # noqa: E402

django.setup()

import django_broadcaster  # noqa: E402

project = "django-broadcaster"
author = "django-broadcaster developers"
copyright = "django-broadcaster developers"
release = django_broadcaster.__version__  # written there alone
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
# `name` in docstrings links to the Python object of that name when there is one.
default_role = "py:obj"
pygments_style = "sphinx"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True}

html_theme = "alabaster"
html_title = f"django-broadcaster {release}"
html_theme_options = {
    "description": "One broadcast bus for every Django process and host.",
    "fixed_sidebar": True,
    "show_relbars": True,
}

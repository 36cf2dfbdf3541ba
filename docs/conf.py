"""Sphinx configuration for the django-broadcaster documentation.

Build with only the ``docs`` extra installed::

    pip install -e ".[docs]"
    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from importlib.metadata import packages_distributions, version
from pathlib import Path

import django
from django.conf import settings

# autodoc imports the app, so Django is set up first, in-process, with just the
# app installed: no database, service or optional client library is needed.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if not settings.configured:
    settings.configure(
        INSTALLED_APPS=["django_broadcaster"],
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        USE_TZ=True,
    )
django.setup()

project = "django-broadcaster"
author = "django-broadcaster developers"
copyright = "django-broadcaster developers"
# The installed distribution that provides the package, whatever its name.
distributions = packages_distributions().get("django_broadcaster")
if not distributions:
    raise SystemExit("docs/conf.py: django_broadcaster is not installed: pip install -e '.[docs]'")
release = version(distributions[0])
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
# `name` in docstrings links to the Python object of that name when there is one.
default_role = "py:obj"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True}

html_theme = "furo"
html_title = f"django-broadcaster {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]

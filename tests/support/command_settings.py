"""Settings for subprocesses started by the tests (``manage.py broadcast``, Daphne).

``BROADCASTER_TEST_BACKENDS`` holds the ``BROADCAST_BACKENDS`` dict as JSON
(``BROADCASTER_TEST_CHANNEL_LAYERS`` likewise ``CHANNEL_LAYERS``);
``BROADCASTER_TEST_DATABASE`` names the PostgreSQL database to use instead of
the one in tests/support/settings.py.
"""

import json
import os

from .settings import *  # noqa: F403
from .settings import DATABASES

if "BROADCASTER_TEST_BACKENDS" in os.environ:
    BROADCAST_BACKENDS = json.loads(os.environ["BROADCASTER_TEST_BACKENDS"])
if "BROADCASTER_TEST_CHANNEL_LAYERS" in os.environ:
    CHANNEL_LAYERS = json.loads(os.environ["BROADCASTER_TEST_CHANNEL_LAYERS"])
if "BROADCASTER_TEST_DATABASE" in os.environ:
    DATABASES["default"]["NAME"] = os.environ["BROADCASTER_TEST_DATABASE"]

"""Settings for subprocesses started by the tests (``manage.py broadcast``, Daphne).

``BROADCASTER_TEST_BACKENDS`` holds the ``BROADCAST_BACKENDS`` dict as JSON.
"""

import json
import os

from .settings import *  # noqa: F403

if "BROADCASTER_TEST_BACKENDS" in os.environ:
    BROADCAST_BACKENDS = json.loads(os.environ["BROADCASTER_TEST_BACKENDS"])

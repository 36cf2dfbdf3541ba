"""How big the reliability tests run: CI scale by default, full scale with
``BROADCASTER_RELIABILITY=full``, e.g.
``BROADCASTER_RELIABILITY=full pytest tests/reliability``."""

from __future__ import annotations

import os

FULL = os.environ.get("BROADCASTER_RELIABILITY", "ci") == "full"


def scaled(ci: int, full: int) -> int:
    """``full`` at full scale, else ``ci``."""
    return full if FULL else ci

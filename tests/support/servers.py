"""What the tests that start real HTTP servers share."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable


def wait_until_serving(
    url: str, timeout: float, alive: Callable[[], bool], details: Callable[[], str] = str
) -> None:
    """Poll ``url`` until it answers 200; ``RuntimeError`` (with ``details()``, e.g. the
    server's log) if the server dies or does not answer within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if not alive():
            raise RuntimeError(f"the server for {url} stopped while starting\n{details()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} is not answering after {timeout}s\n{details()}")
        time.sleep(0.05)

"""A background event loop that runs the sync API (``publish``, ``history``).

Sync callers (WSGI views, signals, threads, management commands) share one
long-lived loop per process, so they share its connections: no connection
per call, no "Event loop is closed". Coroutines started on a throwaway loop
(``async_to_sync`` outside any server loop makes one per call) are sent here too.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from asgiref.sync import AsyncToSync

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _bridge_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(
                target=loop.run_forever, name="django-broadcaster-sync", daemon=True
            ).start()
            _loop = loop
        return _loop


def _forget_after_fork() -> None:
    global _loop, _lock
    _loop = None  # the thread did not survive the fork; the next call starts one
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def on_throwaway_loop() -> bool:
    """Whether the running loop is one of asgiref's per-call loops.

    ``async_to_sync()`` called outside a server loop runs each call on a new
    loop that it closes right after; connections made there would die with it,
    so such calls belong on the bridge loop (see `await_on_bridge`).
    """
    return asyncio.get_running_loop() in AsyncToSync.loop_thread_executors


def submit(coro: Coroutine[Any, Any, T]) -> Future[T]:
    """Schedule ``coro`` on the bridge loop."""
    return asyncio.run_coroutine_threadsafe(coro, _bridge_loop())


async def await_on_bridge(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the bridge loop and await its result from another loop."""
    return await asyncio.wrap_future(submit(coro))


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the bridge loop and wait for its result in this thread."""
    return submit(coro).result()

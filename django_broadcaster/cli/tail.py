"""``broadcast tail``: follow channels, resuming where the output fell behind."""

from __future__ import annotations

from collections.abc import Callable

from ..events import Event
from ..exceptions import SubscriberLagged
from ..front import Broadcast


async def follow(
    front: Broadcast,
    channels: list[str],
    since: str | dict[str, str] | None,
    history: int,
    count: int,
    *,
    show: Callable[[Event], None],
    notice: Callable[[str], None],
) -> None:
    """Hand each event of ``channels`` to ``show`` until ``count`` events (0: until
    cancelled or the broadcast is closed); say what happens through ``notice``."""
    seen = 0
    announced = False
    while True:
        try:
            async with front.subscribe(*channels, since=since, history=history) as sub:
                if not announced:
                    announced = True
                    notice(
                        f"Tailing {', '.join(channels)} on {describe(front)}. Press Ctrl-C to stop."
                    )
                async for event in sub:
                    show(event)
                    seen += 1
                    if count and seen >= count:
                        return
                return  # the broadcast was closed
        except SubscriberLagged as exc:
            # The output is slower than the channel: resubscribe where we left off.
            if front.supports_history:
                since, history = _since_mapping(exc, channels), 0
                notice(f"Output fell behind; resuming after {exc.since!r}.")
            else:
                since, history = None, 0
                notice("Output fell behind; events were dropped (no history).")


def describe(front: Broadcast) -> str:
    """``'alias' (Backend location)``, the password masked."""
    backend = front.config.backend_class.__name__
    where = f" {front.safe_location}" if front.safe_location else ""
    return f"{front.alias!r} ({backend}{where})"


def _since_mapping(exc: SubscriberLagged, channels: list[str]) -> dict[str, str] | None:
    since = {c: exc.last_ids[c] for c in channels if exc.last_ids.get(c) is not None}
    return {c: i for c, i in since.items() if i is not None} or None

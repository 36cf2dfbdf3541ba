"""`PublishBatcher`: concurrent publishes of one loop leave together, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from django_broadcaster.batching import PublishBatcher

PUBLISHERS = 10
EACH = 20


class Engine:
    """Stands for a backend's pipelined send: records each batch, answers after a
    round trip (a short sleep)."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, bytes]]] = []

    async def send(self, events: Sequence[tuple[str, bytes]]) -> list[str | Exception | None]:
        self.batches.append(list(events))
        await asyncio.sleep(0.001)
        return [f"{channel}:{payload.decode()}" for channel, payload in events]


def closed() -> Exception:
    return RuntimeError("closed")


async def run_publishers(engine: Engine) -> list[list[str | None]]:
    batcher = PublishBatcher(asyncio.get_running_loop(), engine.send, closed)

    async def publisher(index: int) -> list[str | None]:
        return [await batcher.publish(f"c{index}", str(n).encode()) for n in range(EACH)]

    results = await asyncio.gather(*(publisher(index) for index in range(PUBLISHERS)))
    await batcher.close()
    return results


def test_concurrent_publishers_leave_together() -> None:
    """Once the first publish is out, the other publishers' events go in batches of
    all of them, not a batch of one alternating with a batch of the rest."""
    engine = Engine()
    asyncio.run(run_publishers(engine))
    sizes = [len(batch) for batch in engine.batches]
    assert sum(sizes) == PUBLISHERS * EACH
    # The first publish leaves alone and the others queue behind it; from then on
    # each completed batch wakes its publishers, who queue before the next leaves
    # (before the fix: 1, 10, 1, 10, ...).
    assert sizes[0] == 1
    assert set(sizes[1:-1]) == {PUBLISHERS}, sizes


def test_each_publisher_gets_its_own_results_in_order() -> None:
    engine = Engine()
    results = asyncio.run(run_publishers(engine))
    for index, ids in enumerate(results):
        assert ids == [f"c{index}:{n}" for n in range(EACH)]
    sent = [event for batch in engine.batches for event in batch]
    for index in range(PUBLISHERS):
        mine = [payload for channel, payload in sent if channel == f"c{index}"]
        assert mine == [str(n).encode() for n in range(EACH)]

"""The backend conformance kit: the contract of ``django_broadcaster.backends.base``
as a test case to subclass, for the shipped backends and for yours.

Subclass `BackendConformance` in a test module of your project, name the
backend, and implement ``break_connection()``::

    from django_broadcaster.testing import conformance

    import myproject.broadcast_backends as mine


    class MyBackendConformance(conformance.BackendConformance):
        BACKEND = "myproject.broadcast_backends.MyBackend"
        LOCATION = "mine://127.0.0.1"
        OPTIONS = {}

        async def break_connection(self) -> None:
            mine.drop_connections()  # as a network failure would

It is a `unittest.IsolatedAsyncioTestCase`: it runs under pytest and under
Django's test runner. `BackendConformance` itself is abstract (it does not
implement ``break_connection()``) and lists no tests, so importing it runs
nothing by itself.

Each test runs under ``override_settings(BROADCAST_BACKENDS=...)`` with aliases
of its own (a unique ``KEY_PREFIX`` each time) and uses ``broadcasts[...]`` and
the backend class's own methods only: the kit observes through public API
(``stats()``). Every wait is bounded by `TIMEOUT`, so a faulty backend fails
the kit instead of hanging it. Backends without history are checked for what
they promise: ``since=``, ``history=`` and ``history()`` refused up front,
delivery resuming after a reconnect; likewise work queues (``enqueue`` and
``dequeue``, for the channel layer's normal channels) on a backend without them.
"""

from __future__ import annotations

from .contract_case import TIMEOUT
from .contract_connections import ConnectionContract
from .contract_delivery import DeliveryContract
from .contract_history import HistoryContract
from .contract_positions import PositionContract
from .contract_queues import QueueContract

__all__ = ["TIMEOUT", "BackendConformance"]


class BackendConformance(
    DeliveryContract, HistoryContract, PositionContract, ConnectionContract, QueueContract
):
    """Every test of the contract. Set ``BACKEND`` (a dotted path), ``LOCATION``
    and ``OPTIONS`` (as in ``BROADCAST_BACKENDS``) and implement
    ``async def break_connection(self) -> None``: break the connections
    ``self.bus`` has open to the engine, without telling the client, the way a
    network failure would.

    Set ``RETENTION_OPTIONS`` too on a backend with history: options keeping only a
    few events per channel, for the ``HistoryGap`` tests.

    Tests may use ``self.alias`` (unique per test; Redis-style client names
    often include it), ``self.key_prefix`` and ``self.bus``.
    """

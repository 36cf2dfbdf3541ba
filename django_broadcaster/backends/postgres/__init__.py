"""PostgreSQL backend: events stored in a table, ``LISTEN``/``NOTIFY`` as the wake-up.

Each event is one row of ``django_broadcaster_event`` (created by
``manage.py migrate``); its ``bigserial`` id is the event id. Publishing
inserts the row and calls ``pg_notify`` in the same statement. The
notification carries the id, and a small event too with an HMAC computed in
the statement under a key derived from ``SECRET_KEY``: the listener hands out
such an event as it is when the MAC checks out. Anything else is trusted for
nothing but a wake-up (anyone may ``NOTIFY``): the listener reads the
channel's rows after its position from the table. Every broadcast channel
has its own ``NOTIFY``
channel: a name of at most 63 bytes derived from a hash of the channel name
(``KEY_PREFIX`` included), so long names work and never collide.

Per channel, publishers take a transaction-scoped advisory lock before the
insert, so ids are assigned *and committed* in the same order: a subscriber
that has seen id N of a channel has seen every earlier one, and resuming
"after N" (after a reconnect, or with ``since=``) neither loses nor repeats.

One connection publishes and reads history; a second one, opened on the first
subscription, ``LISTEN``s. See ``docs/backends/postgres.rst``.

The modules: ``backend`` (`PostgresBackend`: connections, publishing,
history), ``listener`` (the ``LISTEN`` side: subscribing, resuming,
notifications to events), ``statements`` (the SQL), ``envelope`` (the
``NOTIFY`` payload and event ids), ``sealing`` (the notification key and
MAC check), ``names`` (a channel's names in
PostgreSQL), ``retention`` (pruning the table, recording what it deleted for
`PostgresBackend.retains`), ``connections`` (opening and
closing connections from ``LOCATION``), ``configuration`` (``LOCATION`` and
``OPTIONS`` checks) and ``deployment`` (the history table check, ``E008``).
"""

from .backend import PostgresBackend
from .statements import HISTORY_TABLE

__all__ = ["HISTORY_TABLE", "PostgresBackend"]

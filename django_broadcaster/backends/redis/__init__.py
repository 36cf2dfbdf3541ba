"""Redis backends on ``redis.asyncio`` (redis-py 5.x to 8.x; hiredis used when installed).

`RedisBackend` uses Redis pub/sub: at-most-once, no history. `RedisStreamBackend`
appends every event to a Redis Stream (``XADD ... MAXLEN ~ N``) and reads them
with a blocking ``XREAD``: event ids are stream ids, so history, ``since=`` and
resuming after a reconnect come from the stream.

Each backend instance (one per event loop, see `django_broadcaster.hub`) holds:

* one command connection for ``PUBLISH``/``XADD`` and other short commands,
  opened by ``connect()``;
* one reading connection, opened when the first channel is subscribed: the
  pub/sub connection carrying every subscribed channel, or the connection the
  Streams reader keeps its blocking ``XREAD`` on;
* a redis-py pool for history reads, empty until one happens, at most
  ``max_connections`` (10 unless ``CONNECTION_KWARGS`` says otherwise).

The command and reading connections are used directly (``send_command`` and
``read_response``) instead of through ``PubSub.get_message()`` or the client's
``execute_command()``: redis-py 8 wraps every message and command in its retry
and telemetry machinery and, on its default RESP3, pub/sub messages in its
push-notification handling, which measured at twice the cost per message of
redis-py 5 and of the direct path (see docs/backends/redis.rst). These
connections always speak RESP2 (``protocol=2``), so replies have one shape on
every supported redis-py version.

The modules: ``connection`` (settings checks, the connections, the shared base
class), ``wire`` (round trips and replies), ``pubsub`` and ``streams`` (the two
backends), ``deployment`` (the checks of the Sentinel and Cluster settings),
``sentinel`` (finding the master), ``cluster`` (the slot map and the nodes'
connections), ``shards`` (sharded pub/sub subscriptions), ``cluster_pubsub`` and
``cluster_streams`` (the two backends on Redis Cluster, chosen by
``OPTIONS["CLUSTER"]``).
"""

from .cluster_pubsub import RedisClusterBackend
from .cluster_streams import RedisStreamClusterBackend
from .pubsub import RedisBackend
from .streams import RedisStreamBackend

__all__ = [
    "RedisBackend",
    "RedisClusterBackend",
    "RedisStreamBackend",
    "RedisStreamClusterBackend",
]

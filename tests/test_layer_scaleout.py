"""The channel layer's tests again, on a Redis Cluster and on a Sentinel set, for both
Redis backends.

The tests imported below run here a second time: this module's ``backend_name``
fixture (closer than conftest's) gives them a cluster or Sentinel backend instead
of the single servers. Left out: tests pinned to other backends or to none, and the
churn test, whose engine-side count (``PUBSUB NUMSUB`` on the single server) has no
meaning on a cluster (sharded subscriptions) or a Sentinel service name; the cluster
and Sentinel modules check connections and subscriptions their own way.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .support.backends import CONFORMANCE_BACKENDS
from .support.redis_cluster import RedisCluster, RedisSentinels
from .test_layer import (  # noqa: F401 (collected here again)
    layer,
    layer_aliases,
    test_a_normal_channel_queues_until_a_receiver_comes,
    test_adding_twice_delivers_once,
    test_apublish_and_publish_reach_group_members,
    test_async_to_sync_group_send_from_threads,
    test_cancelled_receive_neither_blocks_nor_loses_messages,
    test_cancelled_receive_releases_the_channel_once_idle,
    test_close_ends_pending_receives_and_layer_is_reusable,
    test_consumers_on_two_hosts_chat,
    test_discard_before_add,
    test_expired_messages_are_dropped_even_if_never_read,
    test_flush,
    test_group_add_for_a_channel_of_another_host,
    test_group_membership_expiry,
    test_group_send_drops_silently_for_a_full_member,
    test_group_send_reaches_a_plain_subscriber,
    test_groups_basic,
    test_groups_of_normal_channel_names,
    test_groups_same_prefix,
    test_groups_span_hosts,
    test_layer_resubscribes_after_the_broadcast_is_closed,
    test_message_expiry,
    test_messages_are_not_shared_between_receivers,
    test_multi_send_receive_keeps_order,
    test_normal_channel_between_hosts,
    test_ordering_of_many_messages,
    test_per_channel_capacity_with_globs_and_regexes,
    test_process_local_send_receive,
    test_process_specific_send_between_hosts,
    test_send_capacity,
    test_send_receive,
    test_several_event_loops_in_one_process,
    test_similar_group_names_stay_apart,
    test_sync_send_receive_via_async_to_sync,
)
from .test_layer_loops import (  # noqa: F401
    front,
    test_a_loop_that_closed_hands_its_channels_on,
    test_close_pools_between_send_and_receive_loses_nothing,
    test_plain_event_loops_and_async_to_sync_share_channels,
)
from .test_worker_queues import (  # noqa: F401
    test_a_message_sent_while_nobody_receives_waits_for_a_receiver,
    test_a_receiver_that_stops_gives_its_message_back,
    test_capacity_is_shared_by_every_sender,
    test_every_receiver_waiting_in_one_process_is_served,
    test_receivers_cancelled_at_random_lose_and_repeat_nothing,
    test_sync_workers_through_async_to_sync,
    test_the_earliest_message_expires_first,
)

PASSWORD = "scale-out-pw"
PUBSUB = "django_broadcaster.backends.redis.RedisBackend"
STREAMS = "django_broadcaster.backends.redis.RedisStreamBackend"
SCALE_OUT = ["redis-cluster", "redis-stream-cluster", "redis-sentinel", "redis-stream-sentinel"]


@pytest.fixture(scope="module")
def scale_out() -> Iterator[None]:
    """A 3-master/3-replica cluster and a Sentinel set, as backends of `SCALE_OUT`."""
    cluster, sentinels = RedisCluster(password=PASSWORD), RedisSentinels(password=PASSWORD)
    try:
        cluster.start()
        sentinels.start()
        on_cluster = {"LOCATION": cluster.url, "OPTIONS": {"CLUSTER": True}}
        on_sentinels = {"LOCATION": sentinels.url, "OPTIONS": {"SENTINELS": sentinels.addresses}}
        CONFORMANCE_BACKENDS.update(
            {
                "redis-cluster": {"BACKEND": PUBSUB, **on_cluster},
                "redis-stream-cluster": {"BACKEND": STREAMS, **on_cluster},
                "redis-sentinel": {"BACKEND": PUBSUB, **on_sentinels},
                "redis-stream-sentinel": {"BACKEND": STREAMS, **on_sentinels},
            }
        )
        yield
    finally:
        for name in SCALE_OUT:
            CONFORMANCE_BACKENDS.pop(name, None)
        cluster.stop()
        sentinels.stop()


@pytest.fixture(params=SCALE_OUT)
def backend_name(request: pytest.FixtureRequest, scale_out: None) -> str:
    name: str = request.param
    return name

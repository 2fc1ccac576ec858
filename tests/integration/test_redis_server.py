"""The suite's redis-server: there, answering, emptied between tests."""

from __future__ import annotations

import redis

from tests.redis_support import RedisServer


def test_the_suite_has_a_redis_on_loopback(redis_url: str, redis_server: RedisServer) -> None:
    """The fixture gives a loopback URL of a redis-server that answers and is empty."""
    assert redis_url.startswith("redis://127.0.0.1:")
    client = redis.Redis.from_url(redis_url)
    with client:
        assert client.ping()
        assert client.dbsize() == 0
        client.set("left-over", "1")
    redis_server.flush()
    with redis.Redis.from_url(redis_url) as client:
        assert client.dbsize() == 0

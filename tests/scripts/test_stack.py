"""The stack supervisor: Redis URL handling, embedded Redis, clean stops."""
import socket
from urllib.parse import urlsplit

import pytest
import redis

from scripts.stack import Stack, StackError, free_port, local_url_host, rasa_redis_env
from tests.support.listeners import listening_addresses, loopback_only


def test_rasa_redis_env_from_url():
    assert rasa_redis_env("redis://:s3cret@10.0.0.5:6380/2") == {
        "RASA_REDIS_HOST": "10.0.0.5",
        "RASA_REDIS_PORT": "6380",
        "RASA_REDIS_DB": "2",
        "RASA_REDIS_PASSWORD": "s3cret",
    }
    assert rasa_redis_env("redis://localhost")["RASA_REDIS_DB"] == "0"


def test_rasa_redis_env_refuses_other_schemes():
    with pytest.raises(StackError):
        rasa_redis_env("unix:///tmp/redis.sock")


def test_embedded_redis_starts_persists_and_stops(tmp_path):
    stack = Stack(run_dir=tmp_path / "run", log_dir=tmp_path / "logs")
    port = free_port()
    try:
        url = stack.start_embedded_redis(port)
        client = redis.Redis.from_url(url)
        client.set("pd:test", "1")
        assert client.get("pd:test") == b"1"
        client.close()
    finally:
        stack.stop()
    assert not stack.processes
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert (tmp_path / "run" / "redis").is_dir()


def test_a_process_that_dies_is_reported(tmp_path):
    stack = Stack(run_dir=tmp_path / "run", log_dir=tmp_path / "logs")
    process = stack.spawn("crasher", ["python3", "-c", "print('boom'); raise SystemExit(3)"], {})
    try:
        with pytest.raises(StackError, match="crasher exited with 3"):
            stack.wait_http(process, f"http://127.0.0.1:{free_port()}/", timeout=10)
        assert "boom" in process.log_tail()
    finally:
        stack.stop()


def test_rasa_and_the_action_server_share_a_generated_secret_unless_one_is_set(tmp_path):
    first = Stack(run_dir=tmp_path / "a", base_env={})
    second = Stack(run_dir=tmp_path / "b", base_env={"ACTION_SERVER_TOKEN": " "})
    assert len(first.action_server_token) >= 32
    assert second.action_server_token not in (first.action_server_token, " ")
    chosen = Stack(run_dir=tmp_path / "c", base_env={"ACTION_SERVER_TOKEN": "s3cret-token"})
    assert chosen.action_server_token == "s3cret-token"


def test_local_url_host():
    assert [local_url_host(h) for h in ("127.0.0.1", "0.0.0.0", "", "::", "::1", "10.0.0.5")] == [
        "127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.1", "[::1]", "10.0.0.5"]


def test_internal_services_listen_on_loopback_only(redis_url, backends_url, action_server_url):
    for url in (redis_url, backends_url, action_server_url):
        port = urlsplit(url).port
        assert loopback_only(port), (url, listening_addresses(port))


def test_embedded_redis_on_another_address_keeps_loopback_for_local_processes(tmp_path):
    stack = Stack(run_dir=tmp_path / "run", log_dir=tmp_path / "logs")
    port = free_port()
    try:
        url = stack.start_embedded_redis(port, host="127.0.0.2")
        assert url == f"redis://127.0.0.1:{port}/0"
        assert listening_addresses(port) == {"127.0.0.1", "127.0.0.2"}
    finally:
        stack.stop()

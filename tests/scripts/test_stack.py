"""The stack supervisor: Redis URL handling, embedded Redis, clean stops."""
import socket

import pytest
import redis

from scripts.stack import Stack, StackError, free_port, rasa_redis_env


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

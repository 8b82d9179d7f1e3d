"""The action server gives the busy reply, within REDIS_SOCKET_TIMEOUT_SECONDS, when Redis
accepts connections and never answers (real action server, a loopback server that stays silent)."""
from __future__ import annotations

import asyncio
import time

from scripts.stack import Stack, free_port
from tests.support.actions import run_action, texts
from tests.support.hung_server import hung_server


async def test_a_hung_redis_gives_the_busy_reply_within_the_socket_timeout(
        stack: Stack, backend_client_env: dict[str, str]):
    with hung_server() as redis_port:
        # The action deadline is set far away so that only the Redis timeout can end the wait.
        url = await asyncio.to_thread(
            stack.start_action_server, free_port(), f"redis://127.0.0.1:{redis_port}/0",
            backend_client_env, extra_env={"REDIS_SOCKET_TIMEOUT_SECONDS": "2",
                                           "ACTION_DEADLINE_SECONDS": "120"})
        server = stack.processes[-1]
        try:
            started = time.monotonic()
            result = await asyncio.wait_for(
                run_action(url, "action_query_bill", sender_id="sms:13812345678"), 30)
            elapsed = time.monotonic() - started
        finally:
            stack.processes.remove(server)
            server.stop()
    assert any("系统繁忙" in text for text in texts(result)), result
    assert 1.9 <= elapsed < 10, elapsed
    assert "TimeoutError" in server.log_tail(200)

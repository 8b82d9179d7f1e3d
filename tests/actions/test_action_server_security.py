"""The action server only answers Rasa: the shared secret, loopback by default (real process)."""
from __future__ import annotations

import json
import os
import subprocess
from urllib.parse import urlsplit

import aiohttp
import pytest

from scripts.stack import RASA_PY, ROOT, Stack, free_port
from tests.support.actions import run_action, texts, user_message
from tests.support.listeners import listening_addresses, loopback_only

# What an attacker who reaches the port would send: a made-up tracker of somebody's SMS
# conversation asking for its bill.
FORGED_CALL = {
    "next_action": "action_query_bill",
    "sender_id": "sms:13812345678",
    "version": "3.6.2",
    "tracker": {"sender_id": "sms:13812345678", "slots": {}, "events": [],
                "latest_message": user_message("查电费", "query_bill"), "paused": False,
                "latest_action_name": "action_listen", "active_loop": {}},
    "domain": {},
}


async def _post(url: str, headers: dict[str, str]) -> tuple[int, str]:
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(url, json=FORGED_CALL) as response:
            return response.status, await response.text()


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer not-the-secret"},
    {"Authorization": os.environ.get("ACTION_SERVER_TOKEN", "")},  # the secret without "Bearer"
    {"Authorization": "Bearer 令牌"},  # non-ASCII must be refused, not crash the comparison
])
async def test_webhook_without_the_secret_is_refused_and_logged(action_server_url, stack: Stack,
                                                                  headers):
    status, body = await _post(action_server_url, headers)
    assert (status, body) == (401, '{"error":"unauthorized"}')
    log = (stack.log_dir / "actions.log").read_text(errors="replace")
    assert "refused POST /webhook from 127.0.0.1" in log
    assert "13812345678" not in log


async def test_action_list_needs_the_secret_too_and_health_does_not(action_server_url):
    base = action_server_url.rsplit("/", 1)[0]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/actions") as response:
            assert response.status == 401
        async with session.get(f"{base}/health") as response:
            assert response.status == 200


async def test_rasa_with_the_secret_is_served(action_server_url):
    result = await run_action(action_server_url, "action_list_payment_methods",
                              sender_id="web:secret-check-0001")
    assert texts(result)


def test_action_server_listens_on_loopback_only(action_server_url):
    port = urlsplit(action_server_url).port
    assert loopback_only(port), listening_addresses(port)


def test_refuses_a_non_loopback_address_without_a_secret(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "ACTION_SERVER_TOKEN"}
    env.update(PYTHONPATH=str(ROOT), ACTION_SERVER_HOST="0.0.0.0")
    done = subprocess.run([str(RASA_PY), "-m", "actions", "--port", str(port)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert ("action server configuration error: ACTION_SERVER_TOKEN must be set to listen on "
            "0.0.0.0") in done.stderr
    assert "Traceback" not in done.stderr
    assert not listening_addresses(port)


def test_rasas_own_endpoint_client_with_our_endpoints_file_is_accepted(action_server_url, stack):
    """What Rasa's RemoteAction does: read bot/endpoints.yml, post the call through EndpointConfig."""
    program = (
        "import asyncio, json, sys\n"
        "from rasa.utils.endpoints import read_endpoint_config\n"
        "endpoint = read_endpoint_config('bot/endpoints.yml', 'action_endpoint')\n"
        "call = json.loads(sys.stdin.read())\n"
        "answer = asyncio.run(endpoint.request(json=call, method='post', timeout=30))\n"
        "print(json.dumps(answer, ensure_ascii=False))\n"
    )
    call = dict(FORGED_CALL, next_action="action_list_payment_methods", sender_id="web:rasa-client",
                tracker=dict(FORGED_CALL["tracker"], sender_id="web:rasa-client"))
    env = dict(stack.base_env, ACTION_SERVER_URL=action_server_url, REDIS_URL="redis://127.0.0.1:6379/0",
               RASA_REDIS_HOST="127.0.0.1",
               RASA_REDIS_PORT="6379", RASA_REDIS_DB="0", RASA_REDIS_PASSWORD="")
    done = subprocess.run([str(RASA_PY), "-c", program], cwd=ROOT, env=env, input=json.dumps(call),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["responses"]

"""Failure test of the Rasa pool (issue 13, item 5): two Rasa servers, each with its own action
server, and two gateway instances on one Redis; conversations run on both gateways while one
Rasa server and one action server are SIGKILLed. Every customer message gets exactly one answer
and is recorded exactly once in its conversation's tracker, and the killed nodes rejoin the
pool when restarted.

Rasa's conversation lock outlives a killed node for TICKET_LOCK_LIFETIME (Rasa's default is 60 s),
so this stack sets it to 10 s: the retried turn then waits for the lock instead of timing out.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from fakes.webclient import WebClient, texts
from scripts.stack import Stack, free_port

pytestmark = pytest.mark.e2e

CONVERSATIONS = 10
MESSAGES = ("你好", "查电费", "谢谢", "再见")
BUSY = "系统繁忙"


def consecutive_ports(count: int) -> int:
    while True:
        first = free_port()
        if all(_free(first + i) for i in range(count)):
            return first


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def kill(stack: Stack, name: str) -> None:
    process = next(p for p in stack.processes if p.name == name)
    os.killpg(process.popen.pid, signal.SIGKILL)
    process.popen.wait()
    stack.processes.remove(process)
    process.stop()


def healthz(admin_url: str) -> dict:
    try:
        with urllib.request.urlopen(f"{admin_url}/healthz", timeout=5) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        return json.loads(error.read())


@pytest.fixture(scope="module")
def pool_stack(tmp_path_factory, rasa_model: Path, redis_url: str, backend_client_env: dict[str, str]):
    base = tmp_path_factory.mktemp("failover")
    stack = Stack(run_dir=base / "run", log_dir=base / "logs",
                  base_env=dict(os.environ, TICKET_LOCK_LIFETIME="10"))
    rasa_port, action_port = consecutive_ports(2), consecutive_ports(2)
    try:
        rasa_urls = stack.start_rasa_nodes(2, rasa_port, action_port, rasa_model, redis_url,
                                           backend_client_env)
        gateways = []
        for _ in range(2):
            admin_port = free_port()
            url = stack.start_gateway("127.0.0.1", free_port(), redis_url, ",".join(rasa_urls),
                                      extra_env={"RASA_HEALTH_INTERVAL_SECONDS": "0.5"}, admin_port=admin_port)
            gateways.append((url, f"http://127.0.0.1:{admin_port}"))
        yield {"stack": stack, "rasa_urls": rasa_urls, "rasa_port": rasa_port, "action_port": action_port,
               "gateways": gateways, "model": rasa_model, "redis_url": redis_url,
               "backends": backend_client_env}
    finally:
        stack.stop()


async def test_sigkill_of_a_rasa_and_an_action_server_mid_load(pool_stack):
    stack: Stack = pool_stack["stack"]
    gateways = pool_stack["gateways"]
    answered = 0
    killed = asyncio.Event()

    async def converse(index: int) -> tuple[str, list[list[dict]]]:
        nonlocal answered
        web = await WebClient().connect(gateways[index % 2][0])
        try:
            session = await web.session(None)
            answers = []
            for text in MESSAGES:
                answers.append(await web.ask(text, first_timeout=60, quiet=1.0))
                answered += 1
                await asyncio.sleep(0.3)
            with pytest.raises(asyncio.TimeoutError):
                await web.next(2)  # nothing more arrives: no second answer to any message
            return session, answers
        finally:
            await web.close()

    async def killer() -> None:
        while answered < CONVERSATIONS * len(MESSAGES) // 3:
            await asyncio.sleep(0.05)
        kill(stack, "rasa2")
        kill(stack, "actions2")
        killed.set()

    kill_task = asyncio.create_task(killer())
    results = await asyncio.gather(*(converse(i) for i in range(CONVERSATIONS)))
    await kill_task
    assert killed.is_set()

    for _session, answers in results:
        assert len(answers) == len(MESSAGES)
        for events in answers:
            assert events and BUSY not in texts(events), events
    # the killed node is out of rotation on both gateways
    for _url, admin_url in gateways:
        body = healthz(admin_url)
        assert body["rasa"]["detail"] == "1/2 nodes up", body

    # each message was processed exactly once, whichever node took it
    async with aiohttp.ClientSession() as http:
        for session, _answers in results:
            async with http.get(f"{pool_stack['rasa_urls'][0]}/conversations/web:{session}/tracker") as response:
                events = (await response.json())["events"]
            said = [e["text"] for e in events if e["event"] == "user"]
            assert said == list(MESSAGES), (session, said)

    # the killed nodes rejoin when restarted
    action_url = await asyncio.to_thread(
        stack.start_action_server, pool_stack["action_port"] + 1, pool_stack["redis_url"],
        pool_stack["backends"], name="actions2")
    await asyncio.to_thread(stack.start_rasa, pool_stack["rasa_port"] + 1, pool_stack["model"],
                            pool_stack["redis_url"], action_url, name="rasa2")
    for _ in range(60):  # back in rotation after RASA_HEALTH_RISE good probes
        if all(all(n["up"] for n in healthz(admin)["rasa"]["nodes"]) for _url, admin in gateways):
            break
        await asyncio.sleep(0.5)
    for _url, admin_url in gateways:
        body = healthz(admin_url)
        assert [n["up"] for n in body["rasa"]["nodes"]] == [True, True], body
        assert body["rasa"]["detail"] == "2/2 nodes up"
    # and the rejoined node answers its conversations again
    web = await WebClient().connect(gateways[0][0])
    try:
        await web.session(None)
        for text in MESSAGES[:2]:
            assert BUSY not in texts(await web.ask(text, first_timeout=60))
    finally:
        await web.close()

"""Failure test of the Rasa pool (issue 13, item 5): two Rasa servers, each with its own action
server, and two gateway instances on one Redis; 50 conversations run on both gateways while one
Rasa server and one action server are SIGKILLed. Every customer message gets exactly one answer
(never the busy reply) and is recorded exactly once in its conversation's tracker, and the
killed nodes rejoin the pool when restarted.

A turn in flight on the killed Rasa leaves its ticket in Rasa's lock of the conversation until
TICKET_LOCK_LIFETIME is over (20 s in scripts/stack.py, for Rasa and the gateways alike): the
retried turn on the other node waits for it, within the longer budget the gateway gives a call
after a dead node. On a failure the assertion message names each failed message and quotes its
conversation's lines from the gateways' and action servers' logs, and the pool's node changes.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from fakes.webclient import WebClient, texts
from integrations.masking import log_conversation_id
from scripts.stack import Stack, free_port

pytestmark = pytest.mark.e2e

CONVERSATIONS = 50
MESSAGES = ("你好", "查电费", "谢谢", "再见")
BUSY = "系统繁忙"
# Customers read an answer and type the next message: seconds between messages, and the
# conversations start spread over a few seconds (all 50 are open at once, not in lockstep). Faster
# customers overload one Rasa on a busy 2-core machine: its normal turns then pass
# RASA_TIMEOUT_SECONDS, and a busy reply says nothing about failover.
THINK_SECONDS = 10.0
START_SPREAD_SECONDS = 15.0
# The kill waits for this many messages awaiting their answers (about half of them on the node
# that dies), so turns are in flight on it: the case where Rasa's lock outlives the node.
KILL_WITH_PENDING = 4


@dataclass
class Turn:
    """One customer message of the test and what came back."""

    conversation: int
    session: str
    text: str
    events: list[dict]
    sent_at: float
    seconds: float

    def describe(self) -> str:
        sent = time.strftime("%H:%M:%S", time.localtime(self.sent_at))
        return (f"conversation {self.conversation} ({log_conversation_id('web:' + self.session)}), "
                f"message {self.text!r} sent {sent} answered after {self.seconds:.1f}s: {texts(self.events)!r}")


def explain(stack: Stack, turns: list[Turn]) -> str:
    """The failed turns with the log lines of their conversations (gateway, action servers) and
    the pool's node changes, so a failure on a CI machine can be explained afterwards."""
    assert stack.log_dir is not None
    logs = {path.stem: path.read_text(errors="replace").splitlines()
            for path in sorted(stack.log_dir.glob("*.log")) if path.stem.startswith(("gateway", "actions"))}
    parts = []
    for turn in turns:
        name = log_conversation_id("web:" + turn.session)
        parts.append(turn.describe())
        parts += [f"  {stem}: {line}" for stem, lines in logs.items() for line in lines if name in line]
    parts.append("node changes and failovers:")
    parts += [f"  {line}" for line in logs.get("gateway", []) if "Rasa node" in line]
    return "\n".join(parts)


def consecutive_ports(count: int) -> int:
    """``count`` free consecutive ports below the kernel's ephemeral range (from 32768 on Linux):
    a killed node's port stays free for its restart minutes later, where an ephemeral port may
    meanwhile be taken by any outgoing connection on the machine (seen on a busy one)."""
    while True:
        first = random.randrange(20000, 32000)
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


def warm_up(rasa_url: str) -> None:
    """One short conversation straight to a fresh Rasa: its first turns are slow (lazy model
    and graph set-up), which is not what this test is about."""
    for text in ("你好", "查电费"):
        request = urllib.request.Request(
            f"{rasa_url}/webhooks/rest/webhook", method="POST", headers={"Content-Type": "application/json"},
            data=json.dumps({"sender": "warm-up", "message": text}).encode())
        with urllib.request.urlopen(request, timeout=300) as response:
            response.read()


def healthz(admin_url: str) -> dict:
    try:
        with urllib.request.urlopen(f"{admin_url}/healthz", timeout=5) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        return json.loads(error.read())


@pytest.fixture(scope="module")
def pool_stack(tmp_path_factory, rasa_model: Path, redis_url: str, backend_client_env: dict[str, str]):
    base = tmp_path_factory.mktemp("failover")
    # three model loads, two at a time: slow on a 2-core machine busy with other work
    stack = Stack(run_dir=base / "run", log_dir=base / "logs", rasa_ready_seconds=600)
    rasa_port, action_port = consecutive_ports(2), consecutive_ports(2)
    try:
        rasa_urls = stack.start_rasa_nodes(2, rasa_port, action_port, rasa_model, redis_url,
                                           backend_client_env)
        for url in rasa_urls:
            warm_up(url)
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
    answered = pending = 0
    killed = asyncio.Event()
    turns: list[Turn] = []
    extra: list[str] = []

    async def converse(index: int) -> tuple[str, list[list[dict]]]:
        nonlocal answered, pending
        await asyncio.sleep(START_SPREAD_SECONDS * index / CONVERSATIONS)
        web = await WebClient().connect(gateways[index % 2][0])
        try:
            session = await web.session(None)
            answers = []
            for text in MESSAGES:
                sent_at, started = time.time(), time.perf_counter()
                await web.say(text)
                pending += 1
                try:
                    events = [await web.next(60)]
                except asyncio.TimeoutError:
                    events = []
                finally:
                    pending -= 1
                while events:  # the rest of the answer
                    try:
                        events.append(await web.next(1.0))
                    except asyncio.TimeoutError:
                        break
                answers.append(events)
                turns.append(Turn(index, session, text, events, sent_at, time.perf_counter() - started))
                answered += 1
                await asyncio.sleep(THINK_SECONDS)
            try:  # nothing more arrives: no second answer to any message
                surplus = await web.next(2)
                extra.append(f"conversation {index}: {surplus}")
            except asyncio.TimeoutError:
                pass
            return session, answers
        finally:
            await web.close()

    async def killer() -> None:
        total = CONVERSATIONS * len(MESSAGES)
        while answered < total // 3 or (pending < KILL_WITH_PENDING and answered < total * 2 // 3):
            await asyncio.sleep(0.01)
        kill(stack, "rasa2")
        kill(stack, "actions2")
        killed.set()

    kill_task = asyncio.create_task(killer())
    results = await asyncio.gather(*(converse(i) for i in range(CONVERSATIONS)))
    await kill_task
    assert killed.is_set()

    failed = [t for t in turns if not t.events or BUSY in texts(t.events)]
    assert not failed, (f"{len(failed)} of {len(turns)} messages got no answer or a busy reply\n"
                        + explain(stack, failed))
    assert not extra, f"second answers: {extra}"
    # the killed node is out of rotation on both gateways (the live one may take RASA_HEALTH_RISE
    # probes to come back if the load made it miss some)
    for _ in range(20):
        if all(healthz(admin)["rasa"]["detail"] == "1/2 nodes up" for _url, admin in gateways):
            break
        await asyncio.sleep(0.5)
    for _url, admin_url in gateways:
        body = healthz(admin_url)
        assert [n["up"] for n in body["rasa"]["nodes"]] == [True, False], body

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
    rasa2 = await asyncio.to_thread(stack.start_rasa, pool_stack["rasa_port"] + 1, pool_stack["model"],
                                    pool_stack["redis_url"], action_url, name="rasa2")
    await asyncio.to_thread(warm_up, rasa2)
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

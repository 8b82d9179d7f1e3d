"""Benchmark: handed-off conversations across two gateway instances, customers on one, agents on
the other, sharing one Redis.

N concurrent web-chat customers (default 200, socket.io, ``fakes.webclient``) connect to gateway A;
each conversation is handed off (``HandoffStore.request``, queue ``general``) and claimed by one
of K console agents (default 20, round robin) logged in on gateway B, each with the console's live
WebSocket open. Then every conversation exchanges M rounds (default 5): the customer writes, the
agent's WebSocket receives it (latency customer → agent), the agent types for a while and answers
over the console's socket, the customer's socket receives it (latency agent → customer), and the
customer types for a while before the next round (think times: seeded, ±50 %).
No third party is involved: web-chat customers and console agents only; Rasa is the loopback FAKE
of its REST contract (a handed-off customer's messages never reach Rasa).

Printed side by side with a baseline measured in the same run, under the same concurrency and
pacing: a bare Redis stream round trip between two processes (this one ``XADD``s, a relay
process ``XREAD``s and ``XADD``s it back, this one ``XREAD``s it) — the floor any cross-instance
hop through Redis pays on this machine at this moment. Also: CPU seconds of every process, and
the load average before and after (the machine is shared).

    PYTHONPATH=. .venv/app/bin/python -m bench.handoff_bench
    PYTHONPATH=. .venv/app/bin/python -m bench.handoff_bench --conversations 50 --agents 5 --messages 3

Not a test: it prints figures. Target: p99 < 100 ms in both directions.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.webchat_bench import cpu_seconds, percentile, rss_mb  # noqa: E402

C2A = "customer → agent"
A2C = "agent → customer"
BASELINE = "Redis stream round trip (2 processes)"
CLIENTS = "benchmark clients"
RELAY_STREAMS = ("pd:bench:relay:in", "pd:bench:relay:out")
# Every benchmark message carries a tag naming its conversation, round and direction.
_TAG = re.compile(r"\[b(\d+)\.(\d+)([ca])\]")
CUSTOMER_TEXTS = ["您好，我家这个月电费比上个月高了很多，能帮忙看一下吗？", "户号我已经绑定了，麻烦您查一下",
                  "好的，那是不是阶梯电价的原因？", "明白了，谢谢", "还有一个问题，可以办理分期吗？"]
AGENT_TEXTS = ["您好，我是人工客服，正在为您查询，请稍候。", "已查到您的账单，本月用电量较上月增加。",
               "是的，本月已进入第二档阶梯电价。", "不客气，还有什么可以帮您？", "可以的，我为您登记。"]


def tag(conversation: int, round_number: int, direction: str) -> str:
    """The tag of one message: ``direction`` is ``c`` (customer → agent) or ``a`` (agent → customer)."""
    return f"[b{conversation}.{round_number}{direction}]"


def parse_tag(text: Any) -> tuple[int, int, str] | None:
    """``(conversation, round, direction)`` of the first tag in ``text``, or None."""
    match = _TAG.search(text) if isinstance(text, str) else None
    return (int(match[1]), int(match[2]), match[3]) if match else None


def customer_text(conversation: int, round_number: int) -> str:
    return f"{tag(conversation, round_number, 'c')} {CUSTOMER_TEXTS[round_number % len(CUSTOMER_TEXTS)]}"


def agent_text(conversation: int, round_number: int) -> str:
    return f"{tag(conversation, round_number, 'a')} {AGENT_TEXTS[round_number % len(AGENT_TEXTS)]}"


@dataclass(frozen=True)
class Load:
    """The shape of a run: ``conversations`` customers, served by ``agents`` agents (conversation
    i by agent i mod ``agents``), ``messages`` rounds each; starts spread over ``ramp_up`` seconds;
    before each answer the agent types ``agent_think`` seconds and between rounds the customer
    ``think`` seconds, each ±50 % (seeded, so runs repeat)."""

    conversations: int = 200
    agents: int = 20
    messages: int = 5
    think: float = 5.0
    ramp_up: float = 10.0
    seed: int = 12
    agent_think: float = 2.0

    def agent_of(self, conversation: int) -> int:
        return conversation % self.agents

    def start_delay(self, conversation: int) -> float:
        return self.ramp_up * conversation / self.conversations

    def pauses(self, conversation: int) -> list[float]:
        """The customer's think times in one conversation, before rounds 1 .. messages-1."""
        rng = random.Random(self.seed * 1_000_003 + conversation)
        return [self.think * rng.uniform(0.5, 1.5) for _ in range(self.messages - 1)]

    def typing(self, conversation: int) -> list[float]:
        """The agent's typing times in one conversation, before each of its answers."""
        rng = random.Random(self.seed * 1_000_033 + conversation + 7)
        return [self.agent_think * rng.uniform(0.5, 1.5) for _ in range(self.messages)]


@dataclass
class Latencies:
    """Samples in seconds per label, and the failures (a message that never arrived in time)."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)

    def add(self, label: str, seconds: float) -> None:
        self.samples.setdefault(label, []).append(seconds)

    def fail(self, label: str) -> None:
        self.lost[label] = self.lost.get(label, 0) + 1

    def row(self, label: str) -> tuple[int, float, float, float, int]:
        """``(n, p50 ms, p99 ms, max ms, lost)`` of ``label``."""
        values = self.samples.get(label, [])
        return (len(values), 1000 * percentile(values, 0.5), 1000 * percentile(values, 0.99),
                1000 * max(values) if values else float("nan"), self.lost.get(label, 0))


def table(latencies: Latencies, labels: list[str], target_ms: float | None = None) -> list[str]:
    """The side-by-side lines: one per label, with the p99 verdict against ``target_ms``."""
    lines = [f"{'':40}{'n':>7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'lost':>6}"]
    for label in labels:
        n, p50, p99, worst, lost = latencies.row(label)
        verdict = ""
        if target_ms is not None and label != BASELINE and n:
            verdict = "  ok" if p99 < target_ms and not lost else f"  over target ({target_ms:g} ms)"
        lines.append(f"{label:40}{n:7d}{p50:9.1f}{p99:9.1f}{worst:9.1f}{lost:6d}{verdict}")
    return lines


# ---- the baseline: a bare Redis stream round trip between two processes -------------------------

async def relay(redis_url: str) -> None:
    """The relay process: every entry of the in-stream is added to the out-stream, unchanged."""
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    source, target = RELAY_STREAMS
    last = "0-0"  # a fresh Redis: everything added since the start
    try:
        while True:
            batches = await redis.xread({source: last}, block=1000, count=500)
            for _stream, entries in batches:
                async with redis.pipeline(transaction=False) as pipe:
                    for entry_id, fields in entries:
                        pipe.xadd(target, fields, maxlen=100_000, approximate=True)
                        last = entry_id
                    await pipe.execute()
    finally:
        await redis.aclose()


class RelayClient:
    """This process's side of the baseline: ``round_trip(key)`` adds an entry and waits for it
    to come back through the relay; one reader task serves every waiting sender."""

    def __init__(self, redis_url: str) -> None:
        from redis.asyncio import Redis

        self._writer = Redis.from_url(redis_url)
        self._reader = Redis.from_url(redis_url)
        self._waiting: dict[str, asyncio.Future] = {}
        self._task: asyncio.Task | None = None
        self._last = "$"

    async def start(self) -> None:
        out = RELAY_STREAMS[1]
        info = await self._reader.xinfo_stream(out) if await self._reader.exists(out) else None
        self._last = info["last-generated-id"] if info else "0-0"
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        out = RELAY_STREAMS[1]
        while True:
            batches = await self._reader.xread({out: self._last}, block=1000, count=500)
            for _stream, entries in batches:
                for entry_id, fields in entries:
                    self._last = entry_id
                    key = fields.get(b"k", b"").decode()
                    future = self._waiting.pop(key, None)
                    if future is not None and not future.done():
                        future.set_result(time.perf_counter())

    async def round_trip(self, key: str, timeout: float = 10.0) -> float:
        future = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        started = time.perf_counter()
        await self._writer.xadd(RELAY_STREAMS[0], {"k": key, "t": "x" * 40}, maxlen=100_000,
                                approximate=True)
        try:
            return await asyncio.wait_for(future, timeout) - started
        finally:
            self._waiting.pop(key, None)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._writer.aclose()
        await self._reader.aclose()


async def baseline_conversation(client: RelayClient, load: Load, index: int, latencies: Latencies) -> None:
    """One conversation's pacing with the relay in place of the gateways: two round trips a round."""
    await asyncio.sleep(load.start_delay(index))
    pauses, typing = load.pauses(index), load.typing(index)
    for round_number in range(load.messages):
        for direction in "ca":
            if direction == "a":
                await asyncio.sleep(typing[round_number])
            try:
                latencies.add(BASELINE, await client.round_trip(tag(index, round_number, direction)))
            except asyncio.TimeoutError:
                latencies.fail(BASELINE)
        if round_number < len(pauses):
            await asyncio.sleep(pauses[round_number])


# ---- the hand-off path ---------------------------------------------------------------------------

class Agent:
    """One console agent on gateway B: logged in (session cookie + CSRF token), with the live
    WebSocket open. Customer messages arriving on it resolve the futures waiting for their tag;
    replies go over the same socket (``{"type": "reply", "cid", "text", "ref"}``) and their
    ``ack``/``error`` frames are counted."""

    def __init__(self, http, base_url: str, name: str, password: str) -> None:
        self.http = http
        self.base = base_url.rstrip("/")
        self.name = name
        self.password = password
        self.csrf = ""
        self.ws = None
        self.acks = 0
        self.errors: list[dict] = []
        self._waiting: dict[tuple[int, int], asyncio.Future] = {}
        self._early: dict[tuple[int, int], float] = {}
        self._reader: asyncio.Task | None = None
        self._refs = 0

    async def login(self) -> None:
        async with self.http.post(f"{self.base}/console/login",
                                  json={"username": self.name, "password": self.password}) as response:
            response.raise_for_status()
            body = await response.json()
        self.csrf = body["csrf_token"]
        self.ws = await self.http.ws_connect(f"{self.base}/console/api/live", heartbeat=30,
                                             headers={"Origin": self.base})
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for frame in self.ws:
            if frame.type.name != "TEXT":
                continue
            now = time.perf_counter()
            try:
                event = frame.json()
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if event.get("type") == "ack":
                self.acks += 1
            elif event.get("type") == "error":
                self.errors.append(event)
            elif event.get("type") == "message" and event.get("sender") == "customer":
                self._arrived(parse_tag(event.get("text")), now)

    def _arrived(self, found: tuple[int, int, str] | None, now: float) -> None:
        if found is None or found[2] != "c":
            return
        key = found[:2]
        future = self._waiting.pop(key, None)
        if future is not None and not future.done():
            future.set_result(now)
        else:
            self._early[key] = now

    def expect(self, conversation: int, round_number: int) -> asyncio.Future:
        """A future resolved (perf_counter) when this round's customer message reaches the agent."""
        key = (conversation, round_number)
        future = asyncio.get_running_loop().create_future()
        if key in self._early:
            future.set_result(self._early.pop(key))
        else:
            self._waiting[key] = future
        return future

    async def post(self, path: str, body: dict | None = None) -> dict:
        async with self.http.post(f"{self.base}/console/api{path}", json=body or {},
                                  headers={"X-CSRF-Token": self.csrf}) as response:
            response.raise_for_status()
            return await response.json(content_type=None)

    async def claim(self, cid: str) -> None:
        await self.post(f"/conversations/{quote(cid, safe='')}/claim")

    async def close_conversation(self, cid: str) -> None:
        await self.post(f"/conversations/{quote(cid, safe='')}/close")

    async def reply(self, cid: str, text: str) -> None:
        self._refs += 1
        await self.ws.send_json({"type": "reply", "cid": cid, "text": text, "ref": f"{self.name}-{self._refs}"})

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)


async def until_tagged(client, conversation: int, round_number: int, timeout: float) -> float:
    """Read the customer's ``bot_uttered`` events until the agent's answer of this round arrives;
    returns when it did (perf_counter)."""
    deadline = time.perf_counter() + timeout
    while True:
        event = await client.next(timeout=max(0.001, deadline - time.perf_counter()))
        if parse_tag(event.get("text")) == (conversation, round_number, "a"):
            return time.perf_counter()


async def handoff_conversation(index: int, load: Load, customer_url: str, store, agent: Agent,
                               latencies: Latencies, timeout: float) -> None:
    from fakes.webclient import WebClient

    await asyncio.sleep(load.start_delay(index))
    client = await WebClient().connect(customer_url)
    try:
        cid = "web:" + await client.session(None)
        await store.request(cid, queue="general", reason="request_human", channel="web",
                            customer_type="residential", account="")
        await agent.claim(cid)
        pauses, typing = load.pauses(index), load.typing(index)
        for round_number in range(load.messages):
            arrived = agent.expect(index, round_number)
            started = time.perf_counter()
            await client.say(customer_text(index, round_number))
            try:
                latencies.add(C2A, await asyncio.wait_for(arrived, timeout) - started)
            except asyncio.TimeoutError:
                latencies.fail(C2A)
            await asyncio.sleep(typing[round_number])
            started = time.perf_counter()
            await agent.reply(cid, agent_text(index, round_number))
            try:
                latencies.add(A2C, await until_tagged(client, index, round_number, timeout) - started)
            except asyncio.TimeoutError:
                latencies.fail(A2C)
            if round_number < len(pauses):
                await asyncio.sleep(pauses[round_number])
        await agent.close_conversation(cid)
    finally:
        await client.close()


# ---- the run -------------------------------------------------------------------------------------

async def create_agents(redis_url: str, count: int, password: str) -> list[str]:
    from redis.asyncio import Redis

    from channels.console.auth import UserExists, UserStore

    redis = Redis.from_url(redis_url)
    try:
        users = UserStore(redis)
        names = [f"bench{i:03d}" for i in range(count)]
        for name in names:
            try:
                await users.add(name, "agent", ("general",), password, display_name=f"坐席{name[-3:]}")
            except UserExists:
                pass
        return names
    finally:
        await redis.aclose()


async def measure(load: Load, redis_url: str, customer_url: str, agent_url: str,
                  pids: dict[str, int], timeout: float) -> tuple[Latencies, dict[str, float], float, list[str]]:
    """Baseline then hand-off path, same load; returns the latencies, the CPU seconds per process
    during the hand-off part, its wall time and notes (the agents' replies acknowledged or refused)."""
    import aiohttp
    from redis.asyncio import Redis

    from channels.handoff.store import HandoffStore

    latencies = Latencies()
    relay_client = RelayClient(redis_url)
    await relay_client.start()
    try:
        await asyncio.gather(*(baseline_conversation(relay_client, load, i, latencies)
                               for i in range(load.conversations)))
    finally:
        await relay_client.close()

    password = uuid.uuid4().hex
    names = await create_agents(redis_url, load.agents, password)
    redis = Redis.from_url(redis_url, decode_responses=True)
    store = HandoffStore(redis)
    sessions = [aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) for _ in names]
    agents = [Agent(http, agent_url, name, password) for http, name in zip(sessions, names)]
    try:
        await asyncio.gather(*(agent.login() for agent in agents))
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        before[CLIENTS] = time.process_time()
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(handoff_conversation(i, load, customer_url, store,
                                                               agents[load.agent_of(i)], latencies, timeout)
                                          for i in range(load.conversations)), return_exceptions=True)
        wall = time.perf_counter() - started
        after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        after[CLIENTS] = time.process_time()
        cpu = {name: after[name] - before[name] for name in before}
        errors = [e for agent in agents for e in agent.errors]
        notes = [f"agents' replies acknowledged by gateway B: {sum(a.acks for a in agents)}, refused: {len(errors)}"
                 + (f" (first: {errors[0]})" if errors else "")]
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            notes.append(f"{len(failed)} conversation(s) broke off (first: {failed[0]!r})")
    finally:
        await asyncio.gather(*(agent.close() for agent in agents), return_exceptions=True)
        await asyncio.gather(*(http.close() for http in sessions))
        await redis.aclose()
    return latencies, cpu, wall, notes


def report(args, load: Load, latencies: Latencies, cpu: dict[str, float], wall: float,
           load_before: tuple[float, ...], notes: list[str]) -> None:
    print()
    print(f"hand-off benchmark: {load.conversations} concurrent handed-off web-chat conversations, "
          f"{load.agents} console agents, {load.messages} rounds each (customer thinks {load.think:g} s, "
          f"agent types {load.agent_think:g} s, ±50 %; starts over {load.ramp_up:g} s); customers on "
          f"gateway A, agents on gateway B, one Redis")
    for line in table(latencies, [C2A, A2C, BASELINE], target_ms=args.target_ms):
        print(line)
    messages = sum(len(latencies.samples.get(label, [])) for label in (C2A, A2C))
    print(f"hand-off part: {wall:.1f} s wall, {messages / wall if wall else 0:.1f} messages/s")
    print(f"CPU during the hand-off part ({os.cpu_count()} cores), seconds and ms per message: " +
          ", ".join(f"{name} {seconds:.1f} s ({1000 * seconds / max(1, messages):.1f})"
                    for name, seconds in cpu.items()))
    print(f"load average before {'/'.join(f'{v:.2f}' for v in load_before)}, after "
          f"{'/'.join(f'{v:.2f}' for v in os.getloadavg())} (1/5/15 min; the machine is shared)")
    for note in notes:
        print(note)


async def run(args) -> None:
    from scripts.stack import APP_PY, Stack, free_port

    load = Load(args.conversations, args.agents, args.messages, args.think, args.ramp_up, args.seed,
                args.agent_think)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(run_dir=Path(tmp) / "run", log_dir=Path(tmp) / "logs")
        try:
            redis_url = stack.start_embedded_redis(free_port())
            pids = {"redis": stack.processes[-1].popen.pid}
            fake_port = free_port()
            fake = stack.spawn("rasa-fake", [str(APP_PY), "-m", "fakes.rasa_rest", "--port", str(fake_port)],
                               dict(stack.base_env))
            rasa_url = f"http://127.0.0.1:{fake_port}"
            stack.wait_http(fake, rasa_url + "/", timeout=30)
            relay_process = stack.spawn("relay", [str(APP_PY), "-m", "bench.handoff_bench", "--relay",
                                                  "--redis-url", redis_url], dict(stack.base_env))
            pids["relay"] = relay_process.popen.pid
            extra = gateway_env()
            customer_url = stack.start_gateway("127.0.0.1", free_port(), redis_url, rasa_url, extra)
            pids["gateway A (customers)"] = stack.processes[-1].popen.pid
            agent_url = stack.start_gateway("127.0.0.1", free_port(), redis_url, rasa_url, extra)
            pids["gateway B (agents)"] = stack.processes[-1].popen.pid
            latencies, cpu, wall, notes = await measure(load, redis_url, customer_url, agent_url, pids,
                                                        args.timeout)
            report(args, load, latencies, cpu, wall, load_before, notes + ["RSS after the run: " + ", ".join(
                f"{name} {rss_mb(pid):.0f} MiB" for name, pid in pids.items())])
        finally:
            stack.stop()


def gateway_env() -> dict[str, str]:
    """Both gateways' settings for the run: every customer connects from 127.0.0.1, so the web
    chat's budgets are lifted (the limiter still runs, so its cost is measured); agents on duty
    around the clock, no unclaimed reminders (every conversation is claimed at once)."""
    return {"WEBCHAT_RATE_PER_ADDRESS": "1000000/min", "WEBCHAT_RATE_PER_SESSION": "1000000/min",
            "DELIVERY_QUIET_HOURS": "off", "HANDOFF_HOURS": "always", "HANDOFF_UNCLAIMED_MINUTES": "0"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--messages", type=int, default=5, help="rounds per conversation")
    parser.add_argument("--think", type=float, default=5.0,
                        help="seconds a customer takes before the next message (±50 %%)")
    parser.add_argument("--agent-think", type=float, default=2.0,
                        help="seconds an agent takes to type an answer (±50 %%)")
    parser.add_argument("--ramp-up", type=float, default=10.0,
                        help="seconds over which the conversations start")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--timeout", type=float, default=10.0, help="a message later than this is lost")
    parser.add_argument("--target-ms", type=float, default=100.0)
    parser.add_argument("--relay", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.relay:
        asyncio.run(relay(args.redis_url))
        return
    if args.agents < 1 or args.conversations < 1 or args.messages < 1:
        parser.error("--conversations, --agents and --messages must be at least 1")
    asyncio.run(run(args))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    main()

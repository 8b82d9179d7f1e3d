"""Benchmark: web chat through the gateway vs. the same load straight to Rasa's REST webhook.

In one run, N concurrent conversations (default 20) each send the same script of M messages
(default 8), first straight to Rasa (``POST /webhooks/rest/webhook``), then as web-chat users
over socket.io through the gateway (``user_uttered`` → ``bot_uttered``). Each conversation sends
its next message when the previous answer is complete. Prints messages/s, p50 and p99 side by
side and the gateway's cost, plus the model's train time (``models/<model>.train.json``), Rasa's
start-up/model load time and the resident memory of Rasa, the action server and the gateway.

Modes:
- default: starts the whole stack with ``scripts.stack.Stack`` (embedded Redis, reference
  backends, action server, Rasa with the current model — trained first only if its inputs
  changed — and the gateway), then stops it;
- ``--rasa-url URL --gateway-url URL``: measure an already running stack (no memory figures);
- ``--fake-rasa``: the gateway in front of a loopback FAKE of Rasa's REST contract (answers at
  once): isolates the gateway's own overhead; clearly labelled in the output.

    PYTHONPATH=. .venv/app/bin/python -m bench.webchat_bench --conversations 20 --messages 8

Not a test: it prints figures. The gateway's targets: >= 90 % of direct-Rasa throughput and
<= 10 ms added at p99.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from channels.router import replies_from_rasa  # noqa: E402
from channels.webchat import bot_uttered_events  # noqa: E402
from scripts.stack import APP_PY, Stack, free_port  # noqa: E402
from tests.channels.webclient import WebClient  # noqa: E402

# A realistic, state-light script: greetings, FAQs, an outage question, thanks.
SCRIPT = ["你好", "怎么交电费", "有哪些缴费方式", "江宁区百家湖明天停电吗", "营业厅几点开门",
          "电费怎么算的", "好的谢谢", "再见"]


@dataclass
class Run:
    label: str
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0
    cpu_ms_per_message: float | None = None          # gateway process
    client_cpu_ms_per_message: float | None = None   # this benchmark's own clients

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] * 1000


async def direct_conversation(http: aiohttp.ClientSession, rasa_url: str, sender: str,
                              script: list[str], run: Run, counts: list[int] | None) -> None:
    for index, text in enumerate(script):
        started = time.perf_counter()
        try:
            async with http.post(f"{rasa_url}/webhooks/rest/webhook",
                                 json={"sender": sender, "message": text, "metadata": {}}) as r:
                answer = await r.json(content_type=None)
                r.raise_for_status()
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            run.errors += 1
            continue
        run.latencies.append(time.perf_counter() - started)
        if counts is not None:
            events = sum(len(bot_uttered_events(reply)) for reply in replies_from_rasa(answer))
            counts[index] = max(counts[index], events)


async def gateway_conversation(gateway_url: str, script: list[str], counts: list[int],
                               run: Run) -> None:
    client = await WebClient().connect(gateway_url)
    try:
        await client.session(None)
        for index, text in enumerate(script):
            started = time.perf_counter()
            await client.say(text)
            try:
                for _ in range(max(1, counts[index])):  # every bot_uttered of this answer
                    await client.next(timeout=30)
            except asyncio.TimeoutError:
                run.errors += 1
                continue
            run.latencies.append(time.perf_counter() - started)
    finally:
        await client.close()


async def measure(rasa_url: str, gateway_url: str, conversations: int, script: list[str],
                  rounds: int, gateway_pid: int | None = None) -> tuple[Run, Run]:
    """Direct then gateway, ``rounds`` times (fresh conversations each time); the last round of
    each is reported, earlier ones warm up both paths."""
    counts = [0] * len(script)
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=conversations * 2)
    direct = gateway = Run("")
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        for _ in range(rounds):
            direct = Run("Rasa REST directly")
            tag = uuid.uuid4().hex[:8]
            started = time.perf_counter()
            await asyncio.gather(*(direct_conversation(http, rasa_url, f"bench:{tag}:{i}", script,
                                                       direct, counts) for i in range(conversations)))
            direct.seconds = time.perf_counter() - started

            gateway = Run("through the gateway (socket.io)")
            cpu_before = (cpu_seconds(gateway_pid) if gateway_pid else 0.0, time.process_time())
            started = time.perf_counter()
            await asyncio.gather(*(gateway_conversation(gateway_url, script, counts, gateway)
                                   for _ in range(conversations)))
            gateway.seconds = time.perf_counter() - started
            if gateway_pid:
                gateway.cpu_ms_per_message = (1000 * (cpu_seconds(gateway_pid) - cpu_before[0])
                                              / max(1, len(gateway.latencies)))
            gateway.client_cpu_ms_per_message = (1000 * (time.process_time() - cpu_before[1])
                                                 / max(1, len(gateway.latencies)))
    return direct, gateway


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, in MiB (Linux /proc)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                stack.extend(int(c) for c in children)
        except (OSError, StopIteration, ValueError):
            continue
    return total / 1024


def train_seconds(model: Path) -> str:
    record = model.with_name(model.name + ".train.json")
    if record.exists():
        return f"{json.loads(record.read_text()).get('train_seconds')} s (models/{record.name})"
    return "unknown (model trained before train times were recorded)"


def report(direct: Run, gateway: Run, conversations: int, messages: int, notes: list[str]) -> None:
    print()
    print(f"web chat benchmark: {conversations} concurrent conversations x {messages} messages")
    print(f"{'':34}{'messages/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for run in (direct, gateway):
        print(f"{run.label:34}{run.rate:12.1f}{run.pct(0.5):10.1f}{run.pct(0.99):10.1f}{run.errors:8d}")
    if direct.rate:
        print(f"{'gateway / direct throughput':34}{100 * gateway.rate / direct.rate:11.1f}%"
              f"   (target >= 90 %)")
    print(f"{'added latency p50 / p99':34}{gateway.pct(0.5) - direct.pct(0.5):+10.1f} ms"
          f"{gateway.pct(0.99) - direct.pct(0.99):+10.1f} ms   (target p99 <= +10 ms)")
    if gateway.cpu_ms_per_message is not None:
        print(f"gateway CPU per message: {gateway.cpu_ms_per_message:.2f} ms; benchmark clients' "
              f"CPU per message: {gateway.client_cpu_ms_per_message:.2f} ms")
    for note in notes:
        print(note)


async def run_fake(args) -> None:
    from channels.embedded_redis import EmbeddedRedis

    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as redis:
        stack = Stack(run_dir=Path(tmp) / "run", log_dir=Path(tmp) / "logs")
        fake_port = free_port()
        fake = stack.spawn("rasa-fake", [str(APP_PY), "-m", "tests.channels.rasa_fake",
                                         "--port", str(fake_port), "--delay-ms", str(args.fake_delay_ms)],
                           dict(stack.base_env))
        rasa_url = f"http://127.0.0.1:{fake_port}"
        try:
            stack.wait_http(fake, rasa_url + "/", timeout=30)
            gateway_url = stack.start_gateway("127.0.0.1", free_port(), redis.url, rasa_url)
            gateway_pid = next(p.popen.pid for p in stack.processes if p.name == "gateway")
            direct, gateway = await measure(rasa_url, gateway_url, args.conversations,
                                            SCRIPT[: args.messages], args.rounds, gateway_pid)
            report(direct, gateway, args.conversations, args.messages, [
                "Rasa here is a loopback FAKE of its REST contract (tests/channels/rasa_fake.py), "
                f"answering after {args.fake_delay_ms} ms: these figures isolate the gateway's own cost.",
                f"gateway RSS: {rss_mb(gateway_pid):.0f} MiB"])
        finally:
            stack.stop()


async def run_stack(args) -> None:
    from scripts.stack import backends_env
    from scripts.train import model_path, train

    model = model_path()
    if not model.exists():
        if args.no_train:
            sys.exit(f"no model for the current inputs ({model.name}); run `make model` first")
        model = train()
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(run_dir=Path(tmp) / "run", log_dir=Path(tmp) / "logs")
        try:
            redis_url = stack.start_embedded_redis(free_port())
            backends_url = stack.start_backends(free_port(), Path(tmp) / "backends.sqlite3")
            actions_url = stack.start_action_server(free_port(), redis_url, backends_env(backends_url))
            started = time.monotonic()
            rasa_url = stack.start_rasa(free_port(), model, redis_url, actions_url)
            rasa_start = time.monotonic() - started
            gateway_url = stack.start_gateway("127.0.0.1", free_port(), redis_url, rasa_url)
            pids = {p.name: p.popen.pid for p in stack.processes}
            direct, gateway = await measure(rasa_url, gateway_url, args.conversations,
                                            SCRIPT[: args.messages], args.rounds, pids["gateway"])
            report(direct, gateway, args.conversations, args.messages, [
                f"model: {model.name}; train time: {train_seconds(model)}",
                f"Rasa start-up incl. model load: {rasa_start:.1f} s",
                "RSS after the run: " + ", ".join(
                    f"{name} {rss_mb(pids[name]):.0f} MiB" for name in ("rasa", "actions", "gateway")
                    if name in pids)])
        finally:
            stack.stop()


async def run_external(args) -> None:
    direct, gateway = await measure(args.rasa_url.rstrip("/"), args.gateway_url.rstrip("/"),
                                    args.conversations, SCRIPT[: args.messages], args.rounds)
    report(direct, gateway, args.conversations, args.messages,
           ["(running stack given by URL: no train time, start-up or memory figures)"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--messages", type=int, default=len(SCRIPT), choices=range(1, len(SCRIPT) + 1))
    parser.add_argument("--rounds", type=int, default=2, help="the last round is reported")
    parser.add_argument("--rasa-url")
    parser.add_argument("--gateway-url")
    parser.add_argument("--fake-rasa", action="store_true")
    parser.add_argument("--fake-delay-ms", type=float, default=0.0)
    parser.add_argument("--no-train", action="store_true", help="fail instead of training a model")
    args = parser.parse_args()
    if args.fake_rasa:
        asyncio.run(run_fake(args))
    elif args.rasa_url or args.gateway_url:
        if not (args.rasa_url and args.gateway_url):
            parser.error("--rasa-url and --gateway-url go together")
        asyncio.run(run_external(args))
    else:
        asyncio.run(run_stack(args))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    main()

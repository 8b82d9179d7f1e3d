"""Benchmark: web chat through the gateway vs. the same load straight to Rasa's REST webhook.

N concurrent conversations (default 20) each send the same script of M messages (default 8),
straight to Rasa (``POST /webhooks/rest/webhook``) and as web-chat users over socket.io through
the gateway (``user_uttered`` → ``bot_uttered``), in alternating rounds after a warm-up. Each
conversation sends its next message when the previous answer is complete. Prints messages/s,
p50 and p99 side by side with each process's CPU per message; then, from a second pass through a
timing proxy that records Rasa's own time per message, the latency the gateway adds; then the
model's train time (``models/<model>.train.json``), Rasa's start-up/model load time and memory.
See bench/README.md for why the added latency is measured that way.

Modes:
- default: starts the whole stack with ``scripts.stack.Stack`` (embedded Redis, reference
  backends, action server, Rasa with the current model — trained first only if its inputs
  changed — and the gateway), then stops it;
- ``--rasa-url URL --gateway-url URL``: measure an already running stack (first part only);
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
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from channels.router import replies_from_rasa  # noqa: E402
from channels.webchat_protocol import bot_uttered_events  # noqa: E402
from scripts.stack import APP_PY, Stack, free_port  # noqa: E402
from fakes.webclient import WebClient  # noqa: E402

CLIENTS = "benchmark clients"  # this process, in the CPU figures

# A realistic, state-light script: greetings, FAQs, an outage question, thanks.
SCRIPT = ["你好", "怎么交电费", "有哪些缴费方式", "江宁区百家湖明天停电吗", "营业厅几点开门",
          "电费怎么算的", "好的谢谢", "再见"]


@dataclass
class Run:
    """One path's figures, accumulated over the measured rounds."""

    label: str
    samples: list[tuple[str, float]] = field(default_factory=list)  # (Rasa sender id, seconds)
    seconds: float = 0.0
    errors: int = 0
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # process name -> CPU seconds

    @property
    def latencies(self) -> list[float]:
        return [seconds for _, seconds in self.samples]

    @property
    def rate(self) -> float:
        return len(self.samples) / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000

    def cpu_ms_per_message(self, process: str) -> float:
        return 1000 * self.cpu_seconds.get(process, float("nan")) / max(1, len(self.samples))


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank), NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@dataclass(frozen=True)
class Load:
    """What every round sends: ``conversations`` conversations, each the ``script``; their
    starts are spread evenly over ``ramp_up`` seconds, as customers do not all press Enter in
    the same millisecond (a simultaneous start would measure one burst, not the steady state)."""

    conversations: int
    script: list[str]
    rounds: int
    ramp_up: float

    def start_delay(self, index: int) -> float:
        return self.ramp_up * index / self.conversations


async def direct_conversation(http: aiohttp.ClientSession, rasa_url: str, sender: str,
                              script: list[str], run: Run, counts: list[int] | None,
                              start_delay: float = 0.0) -> None:
    await asyncio.sleep(start_delay)
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
        run.samples.append((sender, time.perf_counter() - started))
        if counts is not None:
            events = sum(len(bot_uttered_events(reply)) for reply in replies_from_rasa(answer))
            counts[index] = max(counts[index], events)


async def gateway_conversation(gateway_url: str, script: list[str], counts: list[int],
                               run: Run, start_delay: float = 0.0, session_id: str | None = None) -> None:
    """One web-chat user; ``session_id`` asks for that session (None: the gateway picks one)."""
    await asyncio.sleep(start_delay)
    client = await WebClient().connect(gateway_url)
    try:
        sender = "web:" + await client.session(session_id)
        for index, text in enumerate(script):
            started = time.perf_counter()
            await client.say(text)
            try:
                for _ in range(max(1, counts[index])):  # every bot_uttered of this answer
                    await client.next(timeout=30)
            except asyncio.TimeoutError:
                run.errors += 1
                continue
            run.samples.append((sender, time.perf_counter() - started))
    finally:
        await client.close()


async def measure(rasa_url: str, gateway_url: str, load: Load,
                  pids: dict[str, int] | None = None) -> tuple[Run, Run]:
    """One warm-up round of each path, then ``rounds`` rounds alternating direct and gateway,
    fresh conversations each time; the measured rounds are pooled per path. Alternating spreads
    slow spells of Rasa (garbage collection, other work on the machine) over both paths."""
    script = load.script
    counts = [0] * len(script)
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=load.conversations * 2)
    direct = Run("Rasa REST directly")
    gateway = Run("through the gateway (socket.io)")
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        for round_number in range(load.rounds + 1):
            warm_up = round_number == 0
            tag = uuid.uuid4().hex[:8]
            await timed(direct, warm_up, pids or {}, asyncio.gather(*(
                direct_conversation(http, rasa_url, f"bench:{tag}:{i}", script, direct, counts,
                                    load.start_delay(i))
                for i in range(load.conversations))))
            await timed(gateway, warm_up, pids or {}, asyncio.gather(*(
                gateway_conversation(gateway_url, script, counts, gateway, load.start_delay(i))
                for i in range(load.conversations))))
    return direct, gateway


async def timed(run: Run, warm_up: bool, pids: dict[str, int], work: Any) -> None:
    """Await ``work`` and add its wall time, samples and the CPU time of the ``pids`` processes
    and of this benchmark's clients to ``run`` — or, when ``warm_up``, drop what it added."""
    kept, errors = len(run.samples), run.errors
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    cpu_before[CLIENTS] = time.process_time()
    started = time.perf_counter()
    await work
    if warm_up:
        del run.samples[kept:]
        run.errors = errors
        return
    run.seconds += time.perf_counter() - started
    cpu_after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    cpu_after[CLIENTS] = time.process_time()
    for name, before in cpu_before.items():
        run.cpu_seconds[name] = run.cpu_seconds.get(name, 0.0) + cpu_after[name] - before


def outside_rasa_ms(run: Run, rasa_ms: dict[str, list[float]]) -> tuple[list[float], int]:
    """Each sample's latency minus Rasa's time for that message (from the timing proxy), in ms,
    and the number of samples that could not be paired (a failed message shifts its
    conversation's order, so such conversations are left out)."""
    by_sender: dict[str, list[float]] = {}
    for sender, seconds in run.samples:
        by_sender.setdefault(sender, []).append(1000 * seconds)
    outside: list[float] = []
    unpaired = 0
    for sender, latencies in by_sender.items():
        upstream = rasa_ms.get(sender, [])
        if len(upstream) != len(latencies):
            unpaired += len(latencies)
            continue
        outside.extend(total - in_rasa for total, in_rasa in zip(latencies, upstream))
    return outside, unpaired


async def measure_outside_rasa(proxy_url: str, gateway_url: str, load: Load
                               ) -> tuple[list[float], list[float], int]:
    """The same load as :func:`measure`, with both paths going through the timing proxy in front
    of Rasa (``gateway_url`` is a gateway pointed at ``proxy_url``): per-message time outside
    Rasa for the direct path and for the gateway path, and how many samples went unpaired."""
    direct, gateway = await measure(proxy_url, gateway_url, load)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy_url}/_timings") as response:
            rasa_ms = await response.json()
    direct_outside, direct_unpaired = outside_rasa_ms(direct, rasa_ms)
    gateway_outside, gateway_unpaired = outside_rasa_ms(gateway, rasa_ms)
    return direct_outside, gateway_outside, direct_unpaired + gateway_unpaired


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


def report(args, direct: Run, gateway: Run, split: tuple[list[float], list[float], int] | None,
           notes: list[str]) -> None:
    print()
    print(f"web chat benchmark: {args.conversations} concurrent conversations x {args.messages} "
          f"messages (starts spread over {args.ramp_up:g} s), {args.rounds} measured round(s) "
          f"after a warm-up")
    print(f"{'':34}{'messages/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for run in (direct, gateway):
        print(f"{run.label:34}{run.rate:12.1f}{run.pct(0.5):10.1f}{run.pct(0.99):10.1f}{run.errors:8d}")
    if direct.rate:
        print(f"{'gateway / direct throughput':34}{100 * gateway.rate / direct.rate:11.1f}%"
              f"   (target >= 90 %)")
    print(f"{'end-to-end difference p50 / p99':34}{gateway.pct(0.5) - direct.pct(0.5):+10.1f} ms"
          f"{gateway.pct(0.99) - direct.pct(0.99):+10.1f} ms")
    processes = list(gateway.cpu_seconds)
    print(f"CPU ms per message ({os.cpu_count()} cores): " + "; ".join(
        f"{name} {direct.cpu_ms_per_message(name):.1f} / {gateway.cpu_ms_per_message(name):.1f}"
        for name in processes) + "  (direct / through the gateway)")
    if split is not None:
        direct_outside, gateway_outside, unpaired = split
        print()
        print("time outside Rasa per message (same load, both paths through a timing proxy that "
              "records Rasa's own time)")
        print(f"{'':34}{'p50 ms':>10}{'p99 ms':>10}")
        for label, values in ((direct.label, direct_outside), (gateway.label, gateway_outside)):
            print(f"{label:34}{percentile(values, 0.5):10.1f}{percentile(values, 0.99):10.1f}")
        added = [percentile(gateway_outside, q) - percentile(direct_outside, q) for q in (0.5, 0.99)]
        print(f"{'added by the gateway p50 / p99':34}{added[0]:+10.1f}{added[1]:+10.1f}"
              f"   (target p99 <= +10 ms)" + (f"; {unpaired} unpaired samples left out" if unpaired else ""))
    for note in notes:
        print(note)


async def benchmark(args, stack: Stack, redis_url: str, rasa_url: str, notes: list[str]) -> None:
    """Start a gateway in front of ``rasa_url`` and measure it against Rasa; unless
    ``--no-split``, then a timing proxy with a second gateway behind it for the split figures."""
    load = load_of(args)
    gateway_url = stack.start_gateway("127.0.0.1", free_port(), redis_url, rasa_url)
    pids = {p.name: p.popen.pid for p in stack.processes
            if p.name in ("rasa", "rasa-fake", "actions", "redis")}
    pids["gateway"] = stack.processes[-1].popen.pid
    direct, gateway = await measure(rasa_url, gateway_url, load, pids)
    split = None
    if not args.no_split:
        proxy_port = free_port()
        proxy = stack.spawn("rasa-timing-proxy", [str(APP_PY), "-m", "bench.rasa_timing_proxy",
                                                  "--port", str(proxy_port), "--upstream", rasa_url],
                            dict(stack.base_env))
        proxy_url = f"http://127.0.0.1:{proxy_port}"
        stack.wait_http(proxy, proxy_url + "/_timings", timeout=30)
        proxied_gateway_url = stack.start_gateway("127.0.0.1", free_port(), redis_url, proxy_url)
        split = await measure_outside_rasa(proxy_url, proxied_gateway_url, load)
    report(args, direct, gateway, split, notes + ["RSS after the run: " + ", ".join(
        f"{name} {rss_mb(pid):.0f} MiB" for name, pid in pids.items())])


def load_of(args) -> Load:
    return Load(args.conversations, SCRIPT[: args.messages], args.rounds, args.ramp_up)


async def run_fake(args) -> None:
    from channels.embedded_redis import EmbeddedRedis

    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as redis:
        stack = Stack(run_dir=Path(tmp) / "run", log_dir=Path(tmp) / "logs")
        fake_port = free_port()
        fake = stack.spawn("rasa-fake", [str(APP_PY), "-m", "fakes.rasa_rest",
                                         "--port", str(fake_port), "--delay-ms", str(args.fake_delay_ms)],
                           dict(stack.base_env))
        rasa_url = f"http://127.0.0.1:{fake_port}"
        try:
            stack.wait_http(fake, rasa_url + "/", timeout=30)
            await benchmark(args, stack, redis.url, rasa_url, [
                "Rasa here is a loopback FAKE of its REST contract (fakes/rasa_rest.py), "
                f"answering after {args.fake_delay_ms} ms: these figures isolate the gateway's own cost."])
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
            await benchmark(args, stack, redis_url, rasa_url, [
                f"model: {model.name}; train time: {train_seconds(model)}",
                f"Rasa start-up incl. model load: {rasa_start:.1f} s"])
        finally:
            stack.stop()


async def run_external(args) -> None:
    direct, gateway = await measure(args.rasa_url.rstrip("/"), args.gateway_url.rstrip("/"),
                                    load_of(args))
    report(args, direct, gateway, None,
           ["(running stack given by URL: no split figures, train time, start-up or memory figures)"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--messages", type=int, default=len(SCRIPT), choices=range(1, len(SCRIPT) + 1))
    parser.add_argument("--rounds", type=int, default=3,
                        help="measured rounds per path, after one warm-up round")
    parser.add_argument("--ramp-up", type=float, default=1.0,
                        help="seconds over which the conversations' starts are spread")
    parser.add_argument("--rasa-url")
    parser.add_argument("--gateway-url")
    parser.add_argument("--fake-rasa", action="store_true")
    parser.add_argument("--fake-delay-ms", type=float, default=0.0)
    parser.add_argument("--no-split", action="store_true",
                        help="skip the second measurement through the timing proxy")
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
    # Every simulated customer connects from 127.0.0.1: lift the gateway's per-address budget
    # (the limiter still runs, so its cost is measured) unless the caller set one.
    os.environ.setdefault("WEBCHAT_RATE_PER_ADDRESS", "1000000/min")
    main()

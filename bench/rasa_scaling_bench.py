"""Benchmark: 1, 2, 3 Rasa nodes behind one gateway, side by side, next to Rasa called directly.

Starts an embedded Redis, the reference backends and max(--nodes) Rasa servers, each with its own
action server (one after the other, the current model). Then, for each N of
``--nodes`` (default 1,2,3): one gateway with ``RASA_URL`` = the first N Rasa URLs, and N x
``--conversations`` (default 8 per node, enough to keep each Rasa busy) concurrent conversations
of ``--messages`` messages, in alternating rounds (a warm-up, then ``--rounds``):

- straight to Rasa's REST webhook, each conversation to the node the gateway's pool would choose
  for it (``channels.rasa_nodes.rendezvous_score``, the same affinity);
- as web-chat users over socket.io through the gateway.

Conversation ids are drawn so that every node gets exactly ``--conversations`` conversations on
both paths: the figures measure the nodes' capacity, not the luck of a few dozen hashes.
Printed per N and path: messages/s, p50/p99, errors, the scaling efficiency (messages/s with N
nodes / (N x messages/s with one node), per path), Rasa's CPU per message, how many cores the
stack kept busy, and the load average (other work on the machine shows there). The web-chat
driver is ``bench.webchat_bench``'s.

    PYTHONPATH=. .venv/app/bin/python -m bench.rasa_scaling_bench
    PYTHONPATH=. .venv/app/bin/python -m bench.rasa_scaling_bench --nodes 1,2 --rounds 2 --json out.json

Not a test: it prints figures. It never trains (``make bench`` trains first if the inputs changed);
``--model`` runs another model file.
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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.webchat_bench import (SCRIPT, Load, Run, direct_conversation, gateway_conversation,  # noqa: E402
                                 rss_mb, timed)
from channels.rasa_nodes import rendezvous_score  # noqa: E402
from scripts.stack import Stack, backends_env, free_port  # noqa: E402

MAX_NODES = 8  # each Rasa holds ~1.4 GiB


def parse_nodes(raw: str) -> list[int]:
    """``--nodes``: comma-separated node counts, 1..MAX_NODES, returned sorted without repeats."""
    try:
        counts = sorted({int(part) for part in raw.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--nodes takes whole numbers, got {raw!r}") from None
    if not counts or counts[0] < 1 or counts[-1] > MAX_NODES:
        raise argparse.ArgumentTypeError(f"--nodes takes counts from 1 to {MAX_NODES}, got {raw!r}")
    return counts


def node_of(urls: list[str], conversation_id: str) -> str:
    """The node the gateway's Rasa pool sends ``conversation_id`` to while every node is up."""
    return max(urls, key=lambda url: rendezvous_score(url, conversation_id))


def balanced_ids(urls: list[str], per_node: int, fresh: Callable[[], str], prefix: str = "") -> list[str]:
    """``per_node`` ids for each node, drawn from ``fresh()`` and kept while the node that
    ``prefix + id`` has affinity to still needs conversations; interleaved node by node, so
    spread-out starts reach every node at the same pace."""
    wanted: dict[str, list[str]] = {url: [] for url in urls}
    while any(len(ids) < per_node for ids in wanted.values()):
        candidate = fresh()
        ids = wanted[node_of(urls, prefix + candidate)]
        if len(ids) < per_node:
            ids.append(candidate)
    return [wanted[url][i] for i in range(per_node) for url in urls]


def efficiency(rates: dict[int, float]) -> dict[int, float]:
    """Messages/s with N nodes divided by N x messages/s with one (NaN without a 1-node figure)."""
    one = rates.get(1) or float("nan")
    return {nodes: rate / (nodes * one) for nodes, rate in rates.items()}


def metric_total(text: str, name: str) -> float:
    """The sum of every sample of counter ``name`` (all labels) in a Prometheus text page."""
    total = 0.0
    for line in text.splitlines():
        metric = line.split("{", 1)[0].split(" ", 1)[0]
        if metric == name:
            total += float(line.rsplit(" ", 1)[1])
    return total


def conversations_per_node(run: Run, urls: list[str]) -> list[int]:
    """How many of ``run``'s conversations went to each node of ``urls`` (by affinity)."""
    counts = Counter(node_of(urls, sender) for sender in {sender for sender, _ in run.samples})
    return [counts[url] for url in urls]


@dataclass
class Result:
    """One node count's figures."""

    nodes: int
    urls: list[str]
    direct: Run
    gateway: Run
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    rss_mib: dict[str, float]
    busy_replies: int = 0  # the gateway's 系统繁忙 replies (Rasa failed), warm-up included

    def rasa_cpu_ms(self, run: Run) -> float:
        """Rasa's CPU per message, all nodes of this run together."""
        seconds = sum(v for name, v in run.cpu_seconds.items() if name.startswith("rasa"))
        return 1000 * seconds / max(1, len(run.samples))

    @staticmethod
    def cores_busy(run: Run) -> float:
        """CPU seconds of every measured process (the stack and the clients) per wall second."""
        return sum(run.cpu_seconds.values()) / run.seconds if run.seconds else float("nan")

    @staticmethod
    def per_cpu_second(run: Run) -> float:
        """Messages per CPU second of every measured process: what the stack gets out of the
        cores it was given, whatever else runs on the machine."""
        cpu = sum(run.cpu_seconds.values())
        return len(run.samples) / cpu if cpu else float("nan")


async def measure_nodes(urls: list[str], gateway_url: str, load: Load,
                        pids: dict[str, int] | None = None) -> tuple[Run, Run]:
    """A warm-up round of each path, then ``load.rounds`` rounds alternating direct and gateway,
    fresh conversations each round, ``load.conversations / len(urls)`` per node on both paths;
    the measured rounds are pooled per path (as :func:`bench.webchat_bench.measure` does)."""
    per_node, rest = divmod(load.conversations, len(urls))
    if rest or not per_node:
        raise ValueError("conversations must be a positive multiple of the node count")
    counts = [0] * len(load.script)  # bot_uttered events per answer, learnt from the direct path
    direct = Run("Rasa REST directly")
    gateway = Run("through the gateway")
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=load.conversations * 2)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        for round_number in range(load.rounds + 1):
            warm_up = round_number == 0
            senders = ["bench:" + s for s in balanced_ids(urls, per_node, new_id, prefix="bench:")]
            await timed(direct, warm_up, pids or {}, asyncio.gather(*(
                direct_conversation(http, node_of(urls, sender), sender, load.script, direct, counts,
                                    load.start_delay(i))
                for i, sender in enumerate(senders))))
            sessions = balanced_ids(urls, per_node, new_id, prefix="web:")
            await timed(gateway, warm_up, pids or {}, asyncio.gather(*(
                gateway_conversation(gateway_url, load.script, counts, gateway, load.start_delay(i),
                                     session_id=session)
                for i, session in enumerate(sessions))))
    return direct, gateway


def new_id() -> str:
    """A fresh conversation or web-chat session id."""
    return uuid.uuid4().hex


def start_nodes(stack: Stack, count: int, model: Path, redis_url: str, backends: dict[str, str]
                ) -> tuple[list[str], list[float]]:
    """Start ``count`` action servers and Rasa servers (each Rasa with its own action server,
    named like ``Stack.start_rasa_nodes`` does: ``rasa``, ``rasa2``, ...) one pair after the
    other: on a shared 2-core machine, parallel model loads slow each other down.
    Returns the Rasa base URLs and each Rasa's start-up time in seconds."""
    urls, seconds = [], []
    for index in range(count):
        suffix = "" if index == 0 else str(index + 1)
        actions_url = stack.start_action_server(free_port(), redis_url, backends, name=f"actions{suffix}")
        started = time.monotonic()
        urls.append(stack.start_rasa(free_port(), model, redis_url, actions_url, name=f"rasa{suffix}"))
        seconds.append(round(time.monotonic() - started, 1))
        print(f"{urls[-1]} ready after {seconds[-1]:.0f} s", flush=True)
    return urls, seconds


def fmt_load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{value:.2f}" for value in load)


def table(results: list[Result], per_node: int) -> list[str]:
    """The side-by-side table: one row per node count and path."""
    efficiencies = {label: efficiency({r.nodes: getattr(r, label).rate for r in results})
                    for label in ("direct", "gateway")}
    lines = [f"{'nodes':>5}  {'path':<22}{'convs':>6}{'msg/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'errors':>7}{'busy':>5}"
             f"{'efficiency':>11}{'Rasa CPU ms/msg':>16}{'cores busy':>11}{'msg/CPU-s':>10}  load avg before/after"]
    for result in results:
        for label in ("direct", "gateway"):
            run = getattr(result, label)
            lines.append(
                f"{result.nodes:5d}  {run.label:<22}{per_node * result.nodes:6d}{run.rate:8.1f}"
                f"{run.pct(0.5):9.0f}{run.pct(0.99):9.0f}{run.errors:7d}"
                f"{result.busy_replies if label == 'gateway' else '-':>5}"
                f"{100 * efficiencies[label][result.nodes]:10.0f}%{result.rasa_cpu_ms(run):16.1f}"
                f"{result.cores_busy(run):11.2f}{result.per_cpu_second(run):10.1f}"
                f"  {fmt_load(result.load_before)} / {fmt_load(result.load_after)}")
    return lines


def figures(results: list[Result], args: argparse.Namespace, notes: dict[str, object]) -> dict[str, object]:
    """Everything printed, as one JSON-ready dict (``--json``)."""
    rows = []
    for label in ("direct", "gateway"):
        eff = efficiency({r.nodes: getattr(r, label).rate for r in results})
        for result in results:
            run = getattr(result, label)
            rows.append({
                "nodes": result.nodes, "path": label, "conversations": args.conversations * result.nodes,
                "messages": len(run.samples), "messages_per_s": round(run.rate, 2),
                "p50_ms": round(run.pct(0.5), 1), "p99_ms": round(run.pct(0.99), 1), "errors": run.errors,
                "busy_replies": result.busy_replies if label == "gateway" else None,
                "efficiency": round(eff[result.nodes], 3),
                "rasa_cpu_ms_per_message": round(result.rasa_cpu_ms(run), 1),
                "cores_busy": round(result.cores_busy(run), 2),
                "messages_per_cpu_second": round(result.per_cpu_second(run), 2),
                "conversations_per_node": conversations_per_node(run, result.urls),
                "cpu_ms_per_message": {name: round(1000 * s / max(1, len(run.samples)), 2)
                                       for name, s in run.cpu_seconds.items()},
                "load_before": result.load_before, "load_after": result.load_after,
                "rss_mib": {name: round(mib) for name, mib in result.rss_mib.items()},
            })
    return {"conversations_per_node": args.conversations, "messages_per_conversation": args.messages,
            "rounds": args.rounds, "ramp_up_s": args.ramp_up, "cores": os.cpu_count(), **notes, "rows": rows}


def report(results: list[Result], args: argparse.Namespace, notes: dict[str, object]) -> None:
    print()
    print(f"Rasa scaling: {args.conversations} conversations per Rasa node x {args.messages} messages "
          f"(starts spread over {args.ramp_up:g} s), {args.rounds} measured round(s) after a warm-up, "
          f"{os.cpu_count()} cores")
    for line in table(results, args.conversations):
        print(line)
    for result in results:
        if result.direct.rate:
            print(f"{result.nodes} node(s): gateway / direct throughput "
                  f"{100 * result.gateway.rate / result.direct.rate:.0f} %")
    print("efficiency = msg/s with N nodes / (N x msg/s with 1 node), per path; busy = the gateway's "
          "系统繁忙 replies (Rasa failed; warm-up included); cores busy = CPU seconds of Rasa, action "
          "servers, Redis, gateway and the benchmark's clients per wall second; msg/CPU-s = messages per CPU "
          "second of those processes (on a machine shared with other work, msg/s follows the cores the stack "
          "got, msg/CPU-s does not)")
    cores = os.cpu_count() or 1
    if results[-1].nodes > cores:
        print(f"This machine has {cores} cores: N Rasa processes plus the gateway, action servers, Redis "
              f"and the clients share them, so with N > {cores} the efficiency cannot exceed {cores}/N "
              "(less what the other processes use).")
    for name, value in notes.items():
        print(f"{name}: {value}")
    print("RSS after the largest run: " + ", ".join(
        f"{name} {mib:.0f} MiB" for name, mib in results[-1].rss_mib.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(figures(results, args, notes), indent=2, ensure_ascii=False))
        print(f"figures written to {args.json}")


async def run_stack(args: argparse.Namespace) -> None:
    from scripts.train import model_path

    model = args.model or model_path()
    if not model.exists():
        sys.exit(f"no model {model.name}; run `make model` first (or pass --model)")
    most = args.nodes[-1]
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(run_dir=Path(tmp) / "run", log_dir=Path(tmp) / "logs",
                      rasa_ready_seconds=args.start_timeout)
        try:
            redis_url = stack.start_embedded_redis(free_port())
            backends_url = stack.start_backends(free_port(), Path(tmp) / "backends.sqlite3")
            urls, start_up = start_nodes(stack, most, model, redis_url, backends_env(backends_url))
            notes: dict[str, object] = {
                "model": model.name, "Rasa start-up incl. model load, each (s)": start_up}
            results = [await measure_count(stack, args, redis_url, urls[:nodes]) for nodes in args.nodes]
        finally:
            stack.stop()
    report(results, args, notes)


async def measure_count(stack: Stack, args: argparse.Namespace, redis_url: str, urls: list[str]) -> Result:
    """Start a gateway over ``urls``, measure both paths, stop the gateway."""
    nodes = len(urls)
    admin_port = free_port()
    gateway_url = stack.start_gateway("127.0.0.1", free_port(), redis_url, ",".join(urls), admin_port=admin_port)
    gateway = stack.processes[-1]
    suffixes = [""] + [str(i + 1) for i in range(1, nodes)]
    names = ["redis"] + [f"rasa{s}" for s in suffixes] + [f"actions{s}" for s in suffixes]
    pids = {p.name: p.popen.pid for p in stack.processes if p.name in names}
    pids["gateway"] = gateway.popen.pid
    load = Load(args.conversations * nodes, SCRIPT[: args.messages], args.rounds, args.ramp_up)
    load_before = os.getloadavg()
    try:
        direct, through_gateway = await measure_nodes(urls, gateway_url, load, pids)
        rss = {name: rss_mb(pid) for name, pid in pids.items()}
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{admin_port}/metrics") as response:
                busy = int(metric_total(await response.text(), "powerdesk_gateway_busy_replies_total"))
    finally:
        gateway.stop()
        stack.processes.remove(gateway)
    result = Result(nodes, urls, direct, through_gateway, load_before, os.getloadavg(), rss, busy)
    print(f"{nodes} node(s): direct {direct.rate:.1f} msg/s, through the gateway "
          f"{through_gateway.rate:.1f} msg/s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=parse_nodes, default=[1, 2, 3],
                        help="comma-separated Rasa node counts to measure [1,2,3]")
    parser.add_argument("--conversations", type=int, default=8,
                        help="concurrent conversations per Rasa node [8]")
    parser.add_argument("--messages", type=int, default=len(SCRIPT), choices=range(1, len(SCRIPT) + 1))
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per path, after a warm-up [3]")
    parser.add_argument("--ramp-up", type=float, default=1.0,
                        help="seconds over which the conversations' starts are spread [1]")
    parser.add_argument("--model", type=Path, help="the Rasa model [the model of the current inputs]")
    parser.add_argument("--start-timeout", type=float, default=900.0,
                        help="seconds to wait for each Rasa to load its model [900]")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.conversations < 1 or args.rounds < 1:
        parser.error("--conversations and --rounds must be at least 1")
    asyncio.run(run_stack(args))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    # Every simulated customer connects from 127.0.0.1: lift the gateway's per-address budget.
    os.environ.setdefault("WEBCHAT_RATE_PER_ADDRESS", "1000000/min")
    main()

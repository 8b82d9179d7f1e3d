"""Benchmark: does a turn cost more late in a long conversation? ``python -m bench.long_conversation``

Starts Redis, the reference backends, the action server and, one after the other, a Rasa server
per tracker store (``--store``: ``powerdesk``, bot/tracker_store.py as bot/endpoints.yml
configures it; ``stock``, Rasa's own RedisTrackerStore; ``both`` by default, so the two are
compared within one run on the same, possibly loaded, machine). Against each it measures, sending
straight to Rasa's REST webhook one message at a time:

- one conversation of ``--messages`` messages (200): Rasa's CPU per message (user + system time
  of the Rasa process, /proc) by block of 20 messages. Its last 20 messages are sent alternately
  with the first 20 of a new conversation that sends the same texts in the same order, so the
  two blocks compared (messages 1-20 against the last 20: CPU per message and p50 latency) run
  under the same load of the machine and say the same things;
- a customer's first message after ``--sessions`` earlier sessions (365: a year of daily chats,
  written into Redis in that store's format beforehand) against a first message of a new
  customer, ``--samples`` (10) of each, interleaved.

Needs the trained model for the current inputs (``make model``); never trains.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import redis

from scripts.stack import ROOT, Stack, backends_env, free_port

SCRIPT = ["你好", "怎么交电费", "有哪些缴费方式", "江宁区百家湖明天停电吗", "营业厅几点开门",
          "电费怎么算的", "好的谢谢", "再见"]
BLOCK = 20
STOCK_TRACKER_STORE = """tracker_store:
  type: redis
  url: ${RASA_REDIS_HOST}
  port: ${RASA_REDIS_PORT}
  db: ${RASA_REDIS_DB}
  password: ${RASA_REDIS_PASSWORD}
  key_prefix: "pdrasa"
  record_exp: 2592000
"""
POWERDESK_TRACKER_STORE = """tracker_store:
  type: bot.tracker_store.PowerDeskTrackerStore
  url: ${REDIS_URL}
  key_prefix: "pdrasa"
  record_exp: 2592000
  max_session_events: {max_session_events}
"""


@dataclass
class Figures:
    """One store's measurements."""

    store: str
    latencies: list[float] = field(default_factory=list)   # ms, per message of the long one
    block_cpu: list[float] = field(default_factory=list)    # ms per message, per block of 20
    early: list[tuple[float, float]] = field(default_factory=list)  # (cpu, latency): a new one's 1-20
    late: list[tuple[float, float]] = field(default_factory=list)   # the long one's last 20, alternating
    fresh: list[tuple[float, float]] = field(default_factory=list)    # (cpu ms, latency ms)
    veteran: list[tuple[float, float]] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)  # the long conversation's answers


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def endpoints_file(store: str, directory: Path, max_session_events: int = 80) -> Path:
    """bot/endpoints.yml with ``store``'s tracker store (the rest, lock store included, as is)."""
    text = (ROOT / "bot" / "endpoints.yml").read_text(encoding="utf-8")
    section = (STOCK_TRACKER_STORE if store == "stock"
               else POWERDESK_TRACKER_STORE.replace("{max_session_events}", str(max_session_events)))
    text, count = re.subn(r"^tracker_store:\n(?:[ #].*\n|\n)*?(?=^\S)", section + "\n", text, flags=re.M)
    if count != 1:
        raise SystemExit("bot/endpoints.yml has no tracker_store section")
    path = directory / f"endpoints-{store}.yml"
    path.write_text(text, encoding="utf-8")
    return path


def year_of_sessions(cid: str, sessions: int, now: float) -> list[dict]:
    """``sessions`` daily sessions of two turns each, the last one a day old."""
    events: list[dict] = []
    for day in range(sessions, 0, -1):
        at = now - day * 86400
        events += [
            {"event": "action", "name": "action_session_start", "timestamp": at},
            {"event": "session_started", "timestamp": at + 0.001},
            {"event": "action", "name": "action_listen", "timestamp": at + 0.002},
        ]
        for turn, text in enumerate(("你好", "好的谢谢")):
            t = at + 10 * (turn + 1)
            events += [
                {"event": "user", "text": text, "timestamp": t, "input_channel": "rest",
                 "parse_data": {"text": text, "intent": {"name": "greet", "confidence": 0.98},
                                "entities": [], "intent_ranking": []}},
                {"event": "action", "name": "utter_greet", "timestamp": t + 0.1},
                {"event": "bot", "text": "您好，请问有什么可以帮您？", "timestamp": t + 0.2},
                {"event": "action", "name": "action_listen", "timestamp": t + 0.3},
            ]
    return events


def seed(client: redis.Redis, store: str, cid: str, events: list[dict]) -> None:
    """Writes a conversation's history as ``store`` keeps it."""
    if store == "stock":
        client.set(f"pdrasa:tracker:{cid}", json.dumps({"events": events, "name": cid}), ex=2592000)
        return
    starts = [i for i, e in enumerate(events) if e.get("name") == "action_session_start"]
    events_key, meta_key = f"pdrasa:trk:{{{cid}}}:events", f"pdrasa:trk:{{{cid}}}:meta"
    pipe = client.pipeline()
    pipe.delete(events_key)
    pipe.rpush(events_key, *(json.dumps(e, ensure_ascii=False) for e in events))
    pipe.hset(meta_key, mapping={"n": len(events), "s": starts[-1] if starts else 0, "id": cid})
    pipe.expire(events_key, 2592000).expire(meta_key, 2592000)
    pipe.execute()


async def send(http: aiohttp.ClientSession, rasa_url: str, pid: int, cid: str, text: str,
               replies: list[str] | None = None) -> tuple[float, float]:
    """One message; (Rasa CPU ms, latency ms). The answer's texts go to ``replies``."""
    cpu = cpu_seconds(pid)
    started = time.perf_counter()
    async with http.post(f"{rasa_url}/webhooks/rest/webhook", json={"sender": cid, "message": text}) as r:
        r.raise_for_status()
        answer = await r.json()
    if replies is not None:
        replies.append(" / ".join(str(m.get("text")) for m in answer))
    latency = 1000 * (time.perf_counter() - started)
    return 1000 * (cpu_seconds(pid) - cpu), latency


async def measure(store: str, rasa_url: str, pid: int, client: redis.Redis, args) -> Figures:
    figures = Figures(store)
    tag = f"{store}-{int(time.time())}"
    async with aiohttp.ClientSession() as http:
        for i in range(3):  # warm-up
            await send(http, rasa_url, pid, f"web:warm-{tag}-{i}", SCRIPT[i])
        cid, fresh = f"web:long-{tag}", f"web:early-{tag}"
        block_start = cpu_seconds(pid)
        for i in range(args.messages):
            text = SCRIPT[i % len(SCRIPT)]
            if i >= args.messages - BLOCK:  # a new conversation's message first, the same text
                figures.early.append(await send(http, rasa_url, pid, fresh, text))
            cpu, latency = await send(http, rasa_url, pid, cid, text, figures.replies)
            figures.latencies.append(latency)
            if i >= args.messages - BLOCK:
                figures.late.append((cpu, latency))
            if (i + 1) % BLOCK == 0:
                figures.block_cpu.append(1000 * (cpu_seconds(pid) - block_start) / BLOCK)
                block_start = cpu_seconds(pid)
        now = time.time()
        for i in range(args.samples):
            veteran = f"wechat:year-{tag}-{i}"
            seed(client, store, veteran, year_of_sessions(veteran, args.sessions, now))
            figures.fresh.append(await send(http, rasa_url, pid, f"wechat:new-{tag}-{i}", "你好"))
            figures.veteran.append(await send(http, rasa_url, pid, veteran, "你好"))
    return figures


def report(all_figures: list[Figures], args) -> None:
    print(f"long conversation: {args.messages} messages straight to Rasa's REST webhook, one at a time; the last "
          f"{BLOCK} alternate with a new conversation's first {BLOCK} (same texts); first message after "
          f"{args.sessions} daily sessions vs a new customer's, {args.samples} each; "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    head = (f"{'store':10}{'CPU ms 1-20':>13}{'CPU ms last 20':>16}{'ratio':>8}"
            f"{'p50 ms 1-20':>13}{'p50 ms last 20':>16}{'ratio':>8}"
            f"{'1st msg CPU new/year':>24}{'1st msg p50 new/year':>24}")
    print(head)
    for f in all_figures:
        cpu_a, cpu_b = statistics.mean(c for c, _ in f.early), statistics.mean(c for c, _ in f.late)
        lat_a, lat_b = statistics.median(lat for _, lat in f.early), statistics.median(lat for _, lat in f.late)
        fresh_cpu = statistics.mean(c for c, _ in f.fresh)
        year_cpu = statistics.mean(c for c, _ in f.veteran)
        fresh_lat = statistics.median(lat for _, lat in f.fresh)
        year_lat = statistics.median(lat for _, lat in f.veteran)
        print(f"{f.store:10}{cpu_a:13.1f}{cpu_b:16.1f}{cpu_b / cpu_a:8.2f}"
              f"{lat_a:13.1f}{lat_b:16.1f}{lat_b / lat_a:8.2f}"
              f"{fresh_cpu:12.1f} /{year_cpu:9.1f}{fresh_lat:14.1f} /{year_lat:9.1f}")
        print(f"{'':10}CPU ms per message by block of {BLOCK}: " + " ".join(f"{c:.0f}" for c in f.block_cpu)
              + " (the last block alternates with the new conversation's messages)")
    if len(all_figures) == 2:
        a, b = all_figures
        differ = [i + 1 for i, (x, y) in enumerate(zip(a.replies, b.replies)) if x != y]
        print(f"answers of the long conversation that differ between the stores: {len(differ)}"
              + (f" (messages {differ[:10]})" if differ else ""))
        for i in differ[:2]:
            print(f"  message {i}: {a.store}: {a.replies[i - 1][:120]}\n  {'':{len(str(i)) + 9}}"
                  f"{b.store}: {b.replies[i - 1][:120]}")


async def main(args) -> None:
    from scripts.train import model_path

    model = args.model or model_path()
    if not model.exists():
        sys.exit(f"no model for the current inputs ({model.name}); run `make model` first")
    stores = ["powerdesk", "stock"] if args.store == "both" else [args.store]
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(run_dir=Path(tmp) / "run", log_dir=Path(tmp) / "logs", rasa_ready_seconds=args.start_timeout)
        results = []
        try:
            redis_url = stack.start_embedded_redis(free_port())
            backends_url = stack.start_backends(free_port(), Path(tmp) / "backends.sqlite3")
            actions_url = stack.start_action_server(free_port(), redis_url, backends_env(backends_url))
            client = redis.Redis.from_url(redis_url)
            for store in stores:
                rasa_url = stack.start_rasa(free_port(), model, redis_url, actions_url,
                                            endpoints=endpoints_file(store, Path(tmp), args.max_session_events))
                rasa = stack.processes[-1]
                results.append(await measure(store, rasa_url, rasa.popen.pid, client, args))
                stack.processes.remove(rasa)
                rasa.stop()
        finally:
            stack.stop()
    report(results, args)
    if args.replies_out:
        args.replies_out.write_text(json.dumps({f.store: f.replies for f in results}, ensure_ascii=False, indent=1),
                                    encoding="utf-8")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="default: the model of the current inputs")
    parser.add_argument("--store", choices=("both", "powerdesk", "stock"), default="both")
    parser.add_argument("--messages", type=int, default=200, help="messages of the long conversation (>= 40)")
    parser.add_argument("--sessions", type=int, default=365, help="earlier sessions of the veteran customers")
    parser.add_argument("--samples", type=int, default=10, help="first messages of each kind")
    parser.add_argument("--max-session-events", type=int, default=80,
                        help="the PowerDesk store's max_session_events (0: load whole sessions)")
    parser.add_argument("--start-timeout", type=float, default=900.0,
                        help="seconds Rasa may take to load the model (a loaded machine needs minutes)")
    parser.add_argument("--replies-out", type=Path,
                        help="write the long conversation's answers (JSON, per store) to compare runs")
    args = parser.parse_args(argv)
    if args.messages < 2 * BLOCK:
        parser.error(f"--messages must be at least {2 * BLOCK}")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))

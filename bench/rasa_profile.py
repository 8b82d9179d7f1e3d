"""Profile: where Rasa's CPU per message goes. ``python -m bench.rasa_profile``

Starts Redis, the reference backends, the action server and one Rasa server per ``--variant``
(each a set of environment variables for the Rasa process, e.g.
``--variant base: --variant tf1:TF_INTRA_OP_PARALLELISM_THREADS=1``; all loaded side by side,
so they are compared within one run on the same, possibly loaded, machine), then sends straight
to Rasa's REST webhook:

- the ``make bench`` conversations (bench/webchat_bench.py's script of 8 messages): ``--rounds``
  rounds of ``--conversations`` concurrent conversations, the variants taking turns round by
  round;
- one long conversation of ``--long`` messages (0: skipped), one message at a time.

For each it prints Rasa's CPU per message (user + system time of every thread of the process,
/proc), split into the Python threads' share and the rest (TensorFlow's thread pools), the
throughput, p50/p99 latency, the action server's CPU per message, and — with py-spy (``--py-spy``
or on PATH; ``pip install py-spy`` in any virtualenv, it is a standalone binary) — where the
Python threads' CPU goes, by part of Rasa, as a table (``--top N``: also the N functions with
the most samples under them). py-spy samples at ``--rate`` Hz without stopping the process
(``--nonblocking``); samples of idle threads are not counted.

Not a test: it prints figures. Needs the trained model for the current inputs; never trains.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.webchat_bench import SCRIPT
from scripts.stack import Stack, backends_env, free_port

# (part, substrings of a frame "function (path:line)"); a sample belongs to the first part in
# this list that any frame of its stack matches, so the specific parts come first.
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("NLU: tokenizer (jieba)", ("tokenizers/", "jieba_tokenizer", "jieba/")),
    ("NLU: featurizers (regex, lexical, count vectors)", ("nlu/featurizers/",)),
    ("NLU: DIETClassifier", ("diet_classifier.py",)),
    ("NLU: other components (normaliser, regex extractor, synonyms, dedup, fallback)",
     ("nlu/extractors/", "nlu/classifiers/", "bot/components/", "text_normalizer")),
    ("policies: tracker states (past_states, featurisation)", ("past_states", "states_for_tracker_history",
                                                              "_prediction_states", "tracker_featurizers.py")),
    ("policies: RulePolicy", ("rule_policy.py",)),
    ("policies: MemoizationPolicy", ("memoization.py",)),
    ("policies: TEDPolicy", ("ted_policy.py",)),
    ("policies: ensemble, other", ("policies/ensemble.py", "core/policies/")),
    ("tracker store: load (Redis, events → tracker)", ("tracker_store.py:", "retrieve", "from_dict")),
    ("tracker store: save", ("save_tracker", "tracker_store.py")),
    ("lock store", ("lock_store.py", "core/lock.py")),
    ("action server call: answer checked against its JSON schema", ("_validate_action_result",)),
    ("action server call: request JSON (tracker, domain)", ("_action_call_format",)),
    ("action server call: HTTP, response", ("RemoteAction.run", "actions/action.py:7", "endpoints.py")),
    ("event broker", ("brokers/",)),
    ("graph runner (dask, node plumbing)", ("engine/runner", "engine/graph.py", "dask/")),
    ("responses (NLG), built-in actions", ("core/nlg/", "actions/action.py", "actions/loops.py",
                                           "actions/forms.py")),
    ("processor: other (events applied, logging)", ("core/processor.py", "core/agent.py",
                                                    "shared/core/trackers.py", "shared/core/events.py")),
    ("Sanic / HTTP / REST channel", ("sanic/", "channels/rest.py", "channels/channel.py", "rest_channel.py",
                                     "uvloop", "asyncio/")),
]
OTHER = "other (GC, imports, threads)"


@dataclass
class Figures:
    """One variant's measurements of one load."""

    messages: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)   # ms
    cpu: float = 0.0            # Rasa, every thread, seconds
    cpu_main: float = 0.0       # Rasa, the Python threads py-spy sees (main thread + Python threads)
    actions_cpu: float = 0.0    # the action server, seconds
    errors: int = 0
    samples: Counter = field(default_factory=Counter)  # stack -> count

    def per_message(self, seconds: float) -> float:
        return 1000 * seconds / max(1, self.messages)


@dataclass
class Variant:
    name: str
    env: dict[str, str]
    url: str = ""
    pid: int = 0
    bench: Figures = field(default_factory=Figures)
    first: Figures = field(default_factory=Figures)   # long conversation, first 20 messages
    last: Figures = field(default_factory=Figures)    # long conversation, last 20


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """Per thread of ``pid``: (name, user + system CPU seconds)."""
    result = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            result[int(task.name)] = ((task / "comm").read_text().strip(), (int(fields[11]) + int(fields[12])) / tick)
        except (OSError, ValueError, IndexError):
            continue
    return result


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Profiler:
    """py-spy recording one process until stopped (or nothing when py-spy is not available)."""

    def __init__(self, py_spy: str | None, pid: int, rate: int, directory: Path) -> None:
        self.path = directory / f"pyspy-{pid}-{uuid.uuid4().hex[:6]}.txt"
        self.popen = None
        if py_spy:
            self.popen = subprocess.Popen(
                [py_spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
                 "--nonblocking", "--output", str(self.path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)

    def stop(self) -> Counter:
        samples: Counter = Counter()
        if self.popen is None:
            return samples
        self.popen.send_signal(signal.SIGINT)
        self.popen.wait(30)
        if self.path.exists():
            for line in self.path.read_text(errors="replace").splitlines():
                stack, _, count = line.rpartition(" ")
                if stack and count.isdigit():
                    samples[stack] += int(count)
        return samples


class Meter:
    """CPU of Rasa (all threads, and the Python ones) and of the action server over a span."""

    def __init__(self, variant: Variant, actions_pid: int, python_tids: set[int]) -> None:
        self.variant, self.actions_pid, self.python_tids = variant, actions_pid, python_tids

    def __enter__(self) -> "Meter":
        self.threads = thread_cpu(self.variant.pid)
        self.total = process_cpu(self.variant.pid)
        self.actions = process_cpu(self.actions_pid)
        self.started = time.perf_counter()
        return self

    def add_to(self, figures: Figures) -> None:
        after = thread_cpu(self.variant.pid)
        figures.seconds += time.perf_counter() - self.started
        figures.cpu += process_cpu(self.variant.pid) - self.total
        figures.cpu_main += sum(cpu - self.threads.get(tid, ("", 0.0))[1]
                                for tid, (_, cpu) in after.items() if tid in self.python_tids)
        figures.actions_cpu += process_cpu(self.actions_pid) - self.actions

    def __exit__(self, *_exc) -> None:
        pass


async def post(http: aiohttp.ClientSession, url: str, sender: str, text: str, figures: Figures) -> None:
    started = time.perf_counter()
    try:
        async with http.post(f"{url}/webhooks/rest/webhook",
                             json={"sender": sender, "message": text, "metadata": {}}) as r:
            await r.json(content_type=None)
            r.raise_for_status()
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
        figures.errors += 1
        return
    figures.messages += 1
    figures.latencies.append(1000 * (time.perf_counter() - started))


async def conversation(http: aiohttp.ClientSession, url: str, sender: str, delay: float, figures: Figures) -> None:
    await asyncio.sleep(delay)
    for text in SCRIPT:
        await post(http, url, sender, text, figures)


async def bench_round(http: aiohttp.ClientSession, variant: Variant, args, figures: Figures | None,
                      actions_pid: int, profile: bool, tmp: Path) -> None:
    """One round of the make-bench conversations; ``figures`` None: a warm-up."""
    tag = uuid.uuid4().hex[:8]
    sink = figures if figures is not None else Figures()
    meter = Meter(variant, actions_pid, {variant.pid})
    profiler = Profiler(args.py_spy if profile else None, variant.pid, args.rate, tmp)
    with meter:
        await asyncio.gather(*(conversation(http, variant.url, f"prof:{tag}:{i}", args.ramp_up * i / args.conversations,
                                            sink) for i in range(args.conversations)))
        if figures is not None:
            meter.add_to(figures)
    samples = profiler.stop()
    if figures is not None:
        figures.samples.update(samples)


async def long_conversation(http: aiohttp.ClientSession, variant: Variant, args, actions_pid: int,
                            tmp: Path) -> None:
    sender = f"prof-long:{uuid.uuid4().hex[:8]}"
    for i in range(args.long):
        block = variant.first if i < 20 else variant.last if i >= args.long - 20 else None
        if block is None:
            await post(http, variant.url, sender, SCRIPT[i % len(SCRIPT)], Figures())
            continue
        if i in (0, args.long - 20):
            profiler = Profiler(args.py_spy, variant.pid, args.rate, tmp)
        meter = Meter(variant, actions_pid, {variant.pid})
        with meter:
            await post(http, variant.url, sender, SCRIPT[i % len(SCRIPT)], block)
            meter.add_to(block)
        if i in (19, args.long - 1):
            block.samples.update(profiler.stop())


def classify(samples: Counter) -> Counter:
    parts: Counter = Counter()
    for stack, count in samples.items():
        frames = stack.split(";")
        parts[next((part for part, needles in PARTS
                    if any(n in frame for frame in frames for n in needles)), OTHER)] += count
    return parts


def top_functions(samples: Counter, n: int) -> list[tuple[str, int]]:
    inclusive: Counter = Counter()
    for stack, count in samples.items():
        for frame in set(stack.split(";")):
            if "(" in frame:
                inclusive[frame.split(":")[0] + ")" if ":" in frame else frame] += count
    return inclusive.most_common(n)


def print_figures(title: str, variants: list[Variant], pick, args) -> None:
    print(f"\n{title}")
    print(f"{'variant':12}{'msgs':>6}{'msg/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'Rasa CPU ms/msg':>17}"
          f"{'main thread':>13}{'other threads':>15}{'actions ms/msg':>16}{'errors':>8}")
    for v in variants:
        f: Figures = pick(v)
        lat = sorted(f.latencies) or [float("nan")]
        p99 = lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))]
        print(f"{v.name:12}{f.messages:6}{f.messages / max(f.seconds, 1e-9):8.1f}{statistics.median(lat):9.1f}"
              f"{p99:9.1f}{f.per_message(f.cpu):17.1f}{f.per_message(f.cpu_main):13.1f}"
              f"{f.per_message(f.cpu - f.cpu_main):15.1f}{f.per_message(f.actions_cpu):16.1f}{f.errors:8}")
    for v in variants:
        f = pick(v)
        total = sum(f.samples.values())
        if not total:
            continue
        if args.samples_out:
            args.samples_out.mkdir(parents=True, exist_ok=True)
            name = re.sub(r"\W+", "-", f"{v.name}-{title}")[:80]
            (args.samples_out / f"{name}.txt").write_text(
                "".join(f"{stack} {count}\n" for stack, count in f.samples.most_common()))
        print(f"  {v.name}: the main thread's CPU by part ({total} py-spy samples at {args.rate} Hz; "
              f"ms/msg = share x the main thread's {f.per_message(f.cpu_main):.1f} ms/msg)")
        for part, count in classify(f.samples).most_common():
            print(f"    {part:70}{100 * count / total:6.1f} %{count / total * f.per_message(f.cpu_main):8.1f} ms")
        if args.top:
            print(f"  {v.name}: functions with the most samples under them")
            for frame, count in top_functions(f.samples, args.top):
                print(f"    {100 * count / total:5.1f} %  {frame[:150]}")


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``NAME:VAR=V,VAR2=V2`` -> (NAME, env); a comma-separated item without ``=`` continues the
    previous value (``on:RASA_RUNTIME_SPEEDUPS=graph,http,TF_INTRA_OP_PARALLELISM_THREADS=1``)."""
    name, _, rest = text.partition(":")
    env: dict[str, str] = {}
    last = None
    for item in (i for i in rest.split(",") if i):
        if "=" in item:
            last, value = item.split("=", 1)
            env[last] = value
        elif last is not None:
            env[last] += f",{item}"
        else:
            raise ValueError(f"variant {text!r}: {item!r} is not VAR=VALUE")
    return name, env


@contextlib.contextmanager
def running_stack(variants: list[Variant], model: Path, tmp: Path, start_timeout: float):
    """Redis, backends, the action server and one Rasa per variant, all loading their model at
    once (their ``url`` and ``pid`` set); yields the action server's pid, stops everything
    afterwards."""
    stack = Stack(run_dir=tmp / "run", log_dir=tmp / "logs")
    stacks = [stack]
    try:
        redis_url = stack.start_embedded_redis(free_port())
        backends_url = stack.start_backends(free_port(), tmp / "backends.sqlite3")
        actions_url = stack.start_action_server(free_port(), redis_url, backends_env(backends_url))
        actions_pid = stack.processes[-1].popen.pid
        started = time.monotonic()

        def start(v: Variant) -> None:
            rasa = Stack(run_dir=tmp / "run", log_dir=tmp / "logs", base_env=dict(stack.base_env, **v.env),
                         rasa_ready_seconds=start_timeout)
            stacks.append(rasa)
            v.url = rasa.start_rasa(free_port(), model, redis_url, actions_url, name=f"rasa-{v.name}")
            v.pid = rasa.processes[-1].popen.pid
            print(f"started Rasa {v.name} {v.env} in {time.monotonic() - started:.0f} s", flush=True)

        with ThreadPoolExecutor(len(variants)) as pool:
            list(pool.map(start, variants))
        yield actions_pid
    finally:
        for s in reversed(stacks):
            s.stop()


async def run_loads(variants: list[Variant], args, actions_pid: int, tmp: Path) -> None:
    """A warm-up round per variant, the measured rounds (variants taking turns), then the long
    conversation on each variant."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        for v in variants:
            await bench_round(http, v, args, None, actions_pid, False, tmp)
        for r in range(args.rounds):
            for v in variants if r % 2 == 0 else list(reversed(variants)):
                await bench_round(http, v, args, v.bench, actions_pid, True, tmp)
        if args.long:
            for v in variants:
                await long_conversation(http, v, args, actions_pid, tmp)


async def main(args) -> None:
    from scripts.train import model_path

    model = args.model or model_path()
    if not args.attach and not model.exists():
        sys.exit(f"no model for the current inputs ({model.name}); run `make model` first")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        if args.attach:
            running = json.loads(args.attach.read_text())
            variants = [Variant(v["name"], v.get("env", {}), v["url"], v["pid"]) for v in running["variants"]]
            await run_loads(variants, args, running["actions_pid"], tmp)
        else:
            variants = [Variant(*parse_variant(v)) for v in args.variant or ["base:"]]
            with running_stack(variants, model, tmp, args.start_timeout) as actions_pid:
                await run_loads(variants, args, actions_pid, tmp)
    print(f"\nload average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} cores); py-spy: {args.py_spy or 'not found (no per-part split)'}")
    print_figures(f"make-bench conversations: {args.rounds} rounds x {args.conversations} conversations x "
                  f"{len(SCRIPT)} messages", variants, lambda v: v.bench, args)
    if args.long:
        print_figures(f"long conversation, messages 1-20 of {args.long}", variants, lambda v: v.first, args)
        print_figures(f"long conversation, messages {args.long - 19}-{args.long}", variants, lambda v: v.last, args)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="default: the model of the current inputs")
    parser.add_argument("--variant", action="append",
                        help="NAME:VAR=VALUE,... environment of one Rasa server (repeatable; default base:)")
    parser.add_argument("--conversations", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--ramp-up", type=float, default=1.0)
    parser.add_argument("--long", type=int, default=200, help="messages of the long conversation (0: none)")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=0, help="also list the N functions with most samples")
    parser.add_argument("--attach", type=Path,
                        help='JSON {"actions_pid", "variants": [{"name", "url", "pid"}]}: a running stack')
    parser.add_argument("--samples-out", type=Path, help="also write each variant's collapsed stacks here")
    parser.add_argument("--py-spy", default=shutil.which("py-spy"), help="py-spy binary [on PATH]")
    parser.add_argument("--start-timeout", type=float, default=900.0, help="seconds a Rasa may take to load [900]")
    args = parser.parse_args(argv)
    if args.long and args.long < 40:
        parser.error("--long must be 0 or at least 40")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))

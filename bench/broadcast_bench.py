"""Benchmark of the broadcast engine: an outage notice to 100,000 customers through the loopback
fakes of WeChat and the SMS provider, rate limits and quiet hours off.

    make bench-broadcast          # = .venv/app/bin/python -m bench.broadcast_bench
    PYTHONPATH=. .venv/app/bin/python -m bench.broadcast_bench --recipients 20000 --small 2000

Every part runs in its own process (``bench.broadcast_harness``): embedded Redis, the reference
backends on a seeded SQLite file (N accounts in the affected area of one fault outage; their
WeChat and SMS conversations in Redis: 70 % WeChat, 20 % SMS, 10 % both), the WeChat API fake,
the SMS provider fake, and the worker: the operators' CLI ``python -m channels.broadcast run
outage --outage-id GZ90001``.

For each size (``--small``, default 10,000, and ``--recipients``, default 100,000) it runs:

- baseline: a minimal loop in its own process, with no engine and no Redis, sending each
  customer's notice straight to the fakes through the same transport clients (WeChat API client,
  SMS provider signer) with the same concurrency (``--baseline-concurrency``) — the ceiling
  this machine and the fakes allow;
- engine: the CLI worker on the seeded audience; with ``--workers K`` (default 2; 1: not) also
  K workers started at once on a new copy of the audience.

Printed per run: messages accepted by the fakes, wall time of the process, the sending rate
(messages / time between the first and the last message the fakes accepted) and the rate over
the whole process life (start-up and audience paging included), and the process's peak RSS
(VmHWM, sampled every 0.1 s while it runs: ``ru_maxrss`` would also count the benchmark's own
pages, copied into the child between fork and exec). The engine's peak RSS at both sizes is
compared (target: within 10 %); its rate is compared with the target (>= 2,000 messages/s on
this 2-core machine) and the baseline.

Last, the kill test at the large size: a worker is SIGKILLed once the fakes accepted
``--kill-at`` (default 50 %) of the audience, ``run`` resumes the campaign (and runs again when
recipients it held for a retry are due, as the scheduler would), a gateway process drains the
SMS the killed worker left in the outbox (once their lease runs out), and the duplicates and
missing customers are counted at the fakes (target: 0 and 0).

The figures depend on what else runs on the machine: every process of the run shares its cores.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.broadcast_data import BENCH_MIX, OUTAGE, Customer, Outage, Tally, customers, tally  # noqa: E402
from scripts.stack import APP_PY  # noqa: E402

TARGET_RATE = 2000.0
RSS_TOLERANCE = 0.10


@dataclass
class RunFigures:
    """One measured run (baseline or engine) at one size."""

    label: str
    recipients: int
    accepted: int = 0
    wall_seconds: float = 0.0
    sending_seconds: float = 0.0
    maxrss_kb: int = 0
    exit_code: int | None = None
    tally: Tally | None = None
    cpu: dict[str, float] = field(default_factory=dict)   # CPU seconds per process during the run

    @property
    def rate(self) -> float:
        """Messages per second while sending (first to last accepted message)."""
        return self.accepted / self.sending_seconds if self.sending_seconds > 0 else 0.0

    @property
    def overall_rate(self) -> float:
        """Messages per second over the whole process life."""
        return self.accepted / self.wall_seconds if self.wall_seconds > 0 else 0.0


def rss_growth(small_kb: int, large_kb: int) -> float:
    """Relative growth of the peak RSS from the small to the large run (0.05 = +5 %)."""
    return (large_kb - small_kb) / small_kb if small_kb else float("inf")


def marginal_cpu_ms(small: RunFigures, large: RunFigures) -> dict[str, float]:
    """CPU milliseconds per extra message from the small to the large run (start-up cancels
    out): per process (the worker(s), each fake, Redis, the backends), and all together."""
    extra = large.recipients - small.recipients
    per = {name: (large.cpu.get(name, 0.0) - small.cpu.get(name, 0.0)) * 1000 / extra
           for name in dict.fromkeys([*large.cpu, *small.cpu])}
    per["all"] = (sum(large.cpu.values()) - sum(small.cpu.values())) * 1000 / extra
    return per


def cpu_line(per: dict[str, float]) -> str:
    """``worker 0.61, wechat fake 0.18, … all 1.02`` (ms per message)."""
    return ", ".join(f"{name} {ms:.2f}" for name, ms in per.items() if name == "all" or abs(ms) >= 0.005)


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def table(runs: list[RunFigures]) -> str:
    """The runs side by side, one line each."""
    lines = [f"{'run':<28}{'recipients':>11}{'accepted':>10}{'wall s':>9}{'send s':>9}"
             f"{'msg/s':>9}{'msg/s all':>11}{'peak RSS MB':>13}   CPU seconds per process"]
    for r in runs:
        lines.append(f"{r.label:<28}{r.recipients:>11,}{r.accepted:>10,}{r.wall_seconds:>9.1f}"
                     f"{r.sending_seconds:>9.1f}{r.rate:>9.0f}{r.overall_rate:>11.0f}"
                     f"{r.maxrss_kb / 1024:>13.1f}   "
                     + ", ".join(f"{name} {seconds:.1f}" for name, seconds in r.cpu.items()))
    return "\n".join(lines)


# ---- the baseline: a minimal loop straight to the fakes -------------------------------------

def notice_params(outage: Outage = OUTAGE) -> dict[str, str]:
    """The outage notice's parameters for the baseline (what an engine would fill in)."""
    return {"area": outage.area, "start": "11月28日09:30", "end": "11月28日12:30",
            "reason": outage.reason}


def preferred(c: Customer) -> str | None:
    """The conversation a notice goes to (the last used), None when none may be sent to."""
    return c.conversations[0] if c.reachable else None


async def baseline(n: int, concurrency: int) -> int:
    """Send the notice of each of ``n`` customers (:data:`BENCH_MIX`) straight to the fakes,
    ``concurrency`` at a time; returns how many were accepted."""
    from redis.asyncio import Redis

    from channels.config import GatewayConfig
    from channels.sms.providers import sender_from_config
    from channels.sms.providers.base import Outcome, SmsRequest
    from channels.sms.templates import TemplateBook
    from channels.wechat.api import WeChatApi

    config = GatewayConfig.from_env()
    redis = Redis.from_url(config.redis_url)  # the access token only
    wechat = WeChatApi(config.wechat.api_base_url, config.wechat.app_id, config.wechat.app_secret,
                       redis)
    sender = sender_from_config(config.sms)
    params = notice_params()
    template = config.wechat.templates.get("outage_notice")
    data = template.data(params)
    sms_template = TemplateBook.load(config.sms.templates_file).get("outage_notice", config.sms.provider)
    sms_params = {name: params[name] for name in sms_template.params}
    accepted = 0

    async def send(cid: str) -> None:
        nonlocal accepted
        channel, _, user = cid.partition(":")
        if channel == "wechat":
            await wechat.send_template(user, template.template_id, data)
            accepted += 1
        else:
            result = await sender.send(SmsRequest(user, sms_template.id_for(config.sms.provider),
                                                  sms_params))
            accepted += result.outcome is Outcome.SENT

    def targets() -> Iterator[str]:
        for c in customers(n, BENCH_MIX):
            cid = preferred(c)
            if cid:
                yield cid

    async def lane(source: Iterator[str]) -> None:
        for cid in source:  # the lanes share one iterator: the audience is never all in memory
            await send(cid)

    source = targets()
    try:
        await asyncio.gather(*(lane(source) for _ in range(concurrency)))
    finally:
        await wechat.close()
        await sender.close()
        await redis.aclose()
    return accepted


# ---- the measured runs ------------------------------------------------------------------------

async def measure(harness, workers: list, label: str, n: int, audience: list[Customer],
                  timeout: float) -> RunFigures:
    """Follow ``workers`` to their end, sampling the fakes' totals (and, through ``alive()``,
    their peak RSS); then count per recipient. Peak RSS: the largest worker's (VmHWM); worker
    CPU: all of theirs."""
    figures = RunFigures(label, n)
    cpu_before = harness.cpu_seconds()
    started = min(w.started for w in workers)
    first = last = None
    previous = 0
    while any([w.alive() for w in workers]):  # each sampled (VmHWM), not only the first alive
        total = await harness.totals()
        now = time.monotonic()
        if total and first is None:
            first = now
        if total != previous:
            last, previous = now, total
        if now - started > timeout:
            for worker in workers:
                worker.kill()
            break
        await asyncio.sleep(0.1)
    codes = [await w.wait(60) for w in workers]
    figures.exit_code = max(codes, key=abs)
    ended = max(w.ended or time.monotonic() for w in workers)
    total = await harness.settle(quiet_seconds=0.5, timeout=30)
    if total != previous:
        last = ended if last is None else max(last, ended)
    figures.accepted = total
    figures.wall_seconds = ended - started
    figures.sending_seconds = (last - first) if first is not None and last is not None else 0.0
    figures.maxrss_kb = max(w.peak_rss_kb or w.maxrss_kb for w in workers)
    figures.cpu = {"worker": sum(w.cpu_seconds for w in workers), **{
        name: seconds - cpu_before.get(name, 0.0) for name, seconds in harness.cpu_seconds().items()}}
    figures.tally = tally(audience, await harness.counts(audience))
    return figures


async def run_baseline(harness, n: int, audience: list[Customer], concurrency: int,
                       timeout: float) -> RunFigures:
    await harness.restart_fakes()
    worker = harness.start_worker_command(
        [str(APP_PY), "-m", "bench.broadcast_bench", "--baseline-worker", str(n),
         "--baseline-concurrency", str(concurrency)], name=f"baseline-{n}")
    return await measure(harness, [worker], f"baseline (no engine) {n // 1000}k", n, audience, timeout)


async def seed(harness, n: int, audience: list[Customer], fresh_fakes: bool = True) -> None:
    timings = await harness.prepare(audience, fresh_fakes=fresh_fakes)
    print(f"  seeded {n:,} customers: Redis {timings['redis']:.1f} s, SQLite {timings['sqlite']:.1f} s, "
          f"backends start {timings['backends']:.1f} s", flush=True)


async def run_engine(harness, n: int, audience: list[Customer], timeout: float,
                     workers: int = 1) -> RunFigures:
    """The engine on the seeded audience (the baseline leaves the seeded data untouched),
    ``workers`` processes started at once."""
    await harness.restart_fakes()
    started = [harness.start_worker(name=f"engine-{n}-{i + 1}") for i in range(workers)]
    label = f"engine {n // 1000}k" + (f" ({workers} workers)" if workers > 1 else "")
    return await measure(harness, started, label, n, audience, timeout)


@dataclass
class KillFigures:
    """The SIGKILL + resume run at one size."""

    recipients: int
    killed_at: int           # messages accepted when the killed worker was dead
    runs: int                # `run` commands it took to finish (the scheduler's job after the first)
    resume_seconds: float    # from the kill to the campaign done and the SMS outbox drained
    still_waiting: int       # SMS still in the outbox at the deadline (should be 0)
    tally: Tally


async def run_kill(harness, n: int, audience: list[Customer], kill_at: float,
                   timeout: float) -> KillFigures:
    """SIGKILL a worker once ``kill_at`` of the audience was accepted, then `run` again (again
    when held recipients are due, as the scheduler would) with a gateway draining the SMS the
    killed worker left in the outbox; count at the fakes."""
    from bench.broadcast_harness import CAMPAIGN

    await seed(harness, n, audience)
    await harness.start_gateway()
    expected = sum(1 for c in audience if c.reachable)
    first = harness.start_worker(name=f"killed-{n}")
    await harness.wait_totals(int(expected * kill_at), timeout, first, interval=0.02)
    first.kill()
    await first.wait(30)
    killed_at = await harness.totals()
    started = time.monotonic()
    workers = await harness.run_until_done(CAMPAIGN.format(outage_id=OUTAGE.outage_id),
                                           f"resumed-{n}", timeout)
    waiting = await harness.drain_sms_outbox(timeout)
    await harness.settle(quiet_seconds=1.0, timeout=60)
    return KillFigures(n, killed_at, len(workers), time.monotonic() - started, waiting,
                       tally(audience, await harness.counts(audience)))


def _summary(runs: dict[str, RunFigures], small: int, large: int) -> list[str]:
    lines = []
    eng_small, eng_large = runs.get(f"engine-{small}"), runs.get(f"engine-{large}")
    base_large = runs.get(f"baseline-{large}")
    if eng_large:
        ok = eng_large.rate >= TARGET_RATE
        share = f", {eng_large.rate / base_large.rate:.0%} of the baseline" if base_large and base_large.rate else ""
        lines.append(f"engine rate at {large:,}: {eng_large.rate:,.0f} msg/s (target >= {TARGET_RATE:,.0f}"
                     f"{share}): {verdict(ok)}")
    for key, run in runs.items():
        if key.startswith("engine") and key.endswith(f"w-{large}"):
            lines.append(f"{run.label}: {run.rate:,.0f} msg/s (target >= {TARGET_RATE:,.0f}): "
                         f"{verdict(run.rate >= TARGET_RATE)}")
    labels = dict.fromkeys(k.rsplit("-", 1)[0] for k in runs)
    for label in labels:
        small_run, large_run = runs.get(f"{label}-{small}"), runs.get(f"{label}-{large}")
        if small_run and large_run and large > small:
            per = marginal_cpu_ms(small_run, large_run)
            lines.append(f"{label}: CPU ms per message beyond start-up, {small:,} → {large:,}: {cpu_line(per)} "
                         f"(at most {2000 / per['all'] if per['all'] > 0 else 0:,.0f} msg/s on 2 free cores)")
    for run in runs.values():
        if run.accepted:
            lines.append(f"{run.label}: CPU ms per message, start-up included: "
                         + cpu_line({**{k: v * 1000 / run.accepted for k, v in run.cpu.items()},
                                     "all": sum(run.cpu.values()) * 1000 / run.accepted}))
    if eng_small and eng_large:
        growth = rss_growth(eng_small.maxrss_kb, eng_large.maxrss_kb)
        lines.append(f"engine peak RSS {small:,} → {large:,}: {eng_small.maxrss_kb / 1024:.1f} → "
                     f"{eng_large.maxrss_kb / 1024:.1f} MB ({growth:+.1%}, target within "
                     f"{RSS_TOLERANCE:.0%}): {verdict(abs(growth) <= RSS_TOLERANCE)}")
    for key, run in runs.items():
        if key.startswith("engine") and run.tally is not None:
            lines.append(f"{run.label}: {run.tally.summary()} "
                         f"exit {run.exit_code}: {verdict(run.tally.exactly_once and run.exit_code == 0)}")
    return lines


async def main_async(args: argparse.Namespace) -> int:
    from bench.broadcast_harness import Harness, new_run_dir

    sizes = [s for s in (args.small, args.recipients) if s]
    runs: dict[str, RunFigures] = {}
    load = os.getloadavg()
    print(f"broadcast bench: sizes {', '.join(f'{s:,}' for s in sizes)}; {os.cpu_count()} cores, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    run_dir = Path(args.run_dir) if args.run_dir else new_run_dir("broadcast-bench-")
    async with Harness(run_dir, sms_provider=args.sms_provider) as harness:
        for n in [] if args.only_kill else sizes:
            audience = list(customers(n, BENCH_MIX))
            await seed(harness, n, audience, fresh_fakes=False)
            if not args.no_baseline:
                runs[f"baseline-{n}"] = await run_baseline(harness, n, audience,
                                                           args.baseline_concurrency, args.timeout)
                print(table([runs[f"baseline-{n}"]]).splitlines()[1], flush=True)
            runs[f"engine-{n}"] = await run_engine(harness, n, audience, args.timeout)
            print(table([runs[f"engine-{n}"]]).splitlines()[1], flush=True)
            if args.workers > 1:
                await seed(harness, n, audience, fresh_fakes=False)  # a new campaign
                runs[f"engine{args.workers}w-{n}"] = await run_engine(harness, n, audience, args.timeout,
                                                                       args.workers)
                print(table([runs[f"engine{args.workers}w-{n}"]]).splitlines()[1], flush=True)
        kill = None
        if not args.no_kill and sizes:
            audience = list(customers(sizes[-1], BENCH_MIX))
            kill = await run_kill(harness, sizes[-1], audience, args.kill_at, args.timeout)
    print()
    print(table(list(runs.values())))
    print()
    for line in _summary(runs, args.small, args.recipients):
        print(line)
    if kill:
        t = kill.tally
        print(f"SIGKILL at {kill.killed_at:,} of {t.expected:,} accepted, then resumed ({kill.runs} `run`, "
              f"{kill.resume_seconds:.0f} s to done and the SMS outbox drained, {kill.still_waiting} SMS "
              f"still waiting): duplicates {t.duplicates}, missing {t.missing} (target 0 and 0): "
              f"{verdict(t.duplicates == 0 and t.missing == 0 and not t.unexpected and not t.strangers)}")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; logs in {run_dir}")
    if args.json:
        figures = {k: {**vars(v), "tally": vars(v.tally) if v.tally else None, "rate": v.rate,
                       "overall_rate": v.overall_rate} for k, v in runs.items()}
        if kill:
            figures["kill"] = {**vars(kill), "tally": vars(kill.tally)}
        Path(args.json).write_text(json.dumps(figures, indent=1), encoding="utf-8")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="Broadcast engine benchmark (see the module docstring)")
    parser.add_argument("--recipients", type=int, default=100_000, help="the large audience [100000]")
    parser.add_argument("--small", type=int, default=10_000, help="the small audience, for RSS [10000]")
    parser.add_argument("--kill-at", type=float, default=0.5, help="SIGKILL share [0.5]")
    parser.add_argument("--sms-provider", choices=("aliyun", "tencent"), default="aliyun")
    parser.add_argument("--baseline-concurrency", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2,
                        help="also run the engine with this many worker processes at once [2; 1: not]")
    parser.add_argument("--timeout", type=float, default=900.0, help="per run, seconds [900]")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-kill", action="store_true")
    parser.add_argument("--only-kill", action="store_true", help="only the SIGKILL + resume run")
    parser.add_argument("--run-dir", help="where logs and databases go [a new temp dir]")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--baseline-worker", type=int, metavar="N", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_worker is not None:
        accepted = asyncio.run(baseline(args.baseline_worker, args.baseline_concurrency))
        print(f"baseline: {accepted} accepted", flush=True)
        return 0
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

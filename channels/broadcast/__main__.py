"""``python -m channels.broadcast``: run, inspect and schedule broadcast campaigns.

    run KIND [--outage-id ID | --due-within DAYS] [--dry-run] [--workers N]
        plan and send the campaigns of KIND due now (bill_issued, due_reminder, arrears, outage,
        restoration), with a progress bar, then print each one's report; ``run outage`` without
        --outage-id takes every outage due for a notice; --dry-run prints the audience per
        channel and how many would be skipped per reason, sending and recording nothing;
        --workers N sends each campaign with N processes (this one and N-1 ``work`` helpers)
    work CAMPAIGN_ID        send (or resume) an existing campaign in this process
    status CAMPAIGN_ID      one line: state and progress
    report CAMPAIGN_ID [--json]
    list                    the campaigns, newest first
    scheduler               the scheduler process (make run starts one)

Configured like the gateway (REDIS_URL, the channels' variables, DELIVERY_*) plus the
BROADCAST_* variables (channels.broadcast.config) and the backends' (BILLING_API_URL, ...).
Without REDIS_URL it uses ``make run``'s embedded Redis (EMBEDDED_REDIS_HOST [127.0.0.1],
EMBEDDED_REDIS_PORT [6390]). Exit status: 0 done (a campaign whose recipients wait for the end
of quiet hours or a provider's pause is finished by the scheduler), 1 failure (Redis, backends),
2 bad arguments or configuration, 3 no such campaign.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from channels.app import gateway_redis, standalone_deliverer
from channels.broadcast.campaigns import Campaigns, plan_from_meta
from channels.broadcast.config import KINDS, BroadcastConfig, EngineConfig
from channels.broadcast.engine import SKIP_REASONS, DryRun, Engine, following_reports
from channels.broadcast.report import campaign_list, campaign_report, render_report
from channels.broadcast.scheduler import Scheduler
from channels.config import GatewayConfig
from channels.config_error import ConfigError
from channels.quiet_hours import QuietHours

log = logging.getLogger("channels.broadcast")

OK, FAILED, USAGE, NOT_FOUND = 0, 1, 2, 3
SourcesFactory = Callable[[Any], contextlib.AbstractAsyncContextManager[Any]]


@contextlib.asynccontextmanager
async def backend_sources(redis: Any) -> AsyncIterator[Any]:
    """The sources on the backends' HTTP clients (BILLING_API_URL, OUTAGE_API_URL, ...) and
    the customer store in ``redis``."""
    from channels.broadcast.sources import BroadcastSources
    from integrations.clients import BackendClients
    from integrations.config import BackendsConfig
    from integrations.customer_store import CustomerStore

    clients = BackendClients.from_config(BackendsConfig.from_env())
    try:
        yield BroadcastSources(clients.billing, clients.outage, CustomerStore(redis), redis,
                               BroadcastConfig.from_env())
    finally:
        await clients.close()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m channels.broadcast",
                                description="Broadcast campaigns: reminders and outage notices.")
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="plan and send the campaigns of a kind due now")
    run.add_argument("kind", choices=KINDS, metavar="KIND", help=", ".join(KINDS))
    which = run.add_mutually_exclusive_group()
    which.add_argument("--outage-id", help="one outage (kinds outage and restoration)")
    which.add_argument("--due-within", type=_days, metavar="DAYS",
                       help="bills due within DAYS days (kind due_reminder)")
    run.add_argument("--dry-run", action="store_true",
                     help="count the audience per channel and skip reason; send nothing")
    run.add_argument("--workers", type=_workers, default=1, metavar="N",
                     help="worker processes sending each campaign (default 1: this one)")
    work = commands.add_parser("work", help="send (or resume) an existing campaign here")
    work.add_argument("campaign_id", metavar="CAMPAIGN_ID")
    status = commands.add_parser("status", help="a campaign's state and progress")
    status.add_argument("campaign_id", metavar="CAMPAIGN_ID")
    report = commands.add_parser("report", help="a campaign's report")
    report.add_argument("campaign_id", metavar="CAMPAIGN_ID")
    report.add_argument("--json", action="store_true", help="as JSON (as the admin port serves)")
    commands.add_parser("list", help="the campaigns, newest first")
    commands.add_parser("scheduler", help="run the scheduler (make run starts one)")
    return p


def _workers(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 32:
        raise argparse.ArgumentTypeError(f"N must be a whole number from 1 to 32, got {raw!r}")
    return int(raw)


def _days(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or not 0 <= int(raw) <= 60:
        raise argparse.ArgumentTypeError(f"DAYS must be a whole number from 0 to 60, got {raw!r}")
    return int(raw)


def main(argv: Sequence[str] | None = None, *, sources: SourcesFactory | None = None,
         configure_logging: bool = False) -> int:
    """Run one command; returns the exit status (see the module docstring). Only the process
    entry point configures logging (``configure_logging``): a caller inside another process, such
    as a test, keeps its own."""
    p = parser()
    args = p.parse_args(argv)
    if args.command == "run":
        if args.outage_id is not None and args.kind not in ("outage", "restoration"):
            p.error("--outage-id goes with the kinds outage and restoration")
        if args.due_within is not None and args.kind != "due_reminder":
            p.error("--due-within goes with the kind due_reminder")
    try:
        gateway = GatewayConfig.from_env()
        engine_config = EngineConfig.from_env()
    except (ConfigError, ValueError) as exc:
        print(f"broadcast configuration error: {exc}", file=sys.stderr)
        return USAGE
    if not gateway.redis_url:
        host = os.environ.get("EMBEDDED_REDIS_HOST", "").strip() or "127.0.0.1"
        port = os.environ.get("EMBEDDED_REDIS_PORT", "").strip() or "6390"
        gateway = replace(gateway, redis_url=f"redis://{host}:{port}")
    if configure_logging:
        _logging(gateway, args.command)
    try:
        return asyncio.run(_command(args, gateway, engine_config, sources or backend_sources))
    except KeyboardInterrupt:
        print("interrupted; `run` again (or the scheduler) resumes the campaign", file=sys.stderr)
        return FAILED


def _logging(gateway: GatewayConfig, command: str) -> None:
    from channels.log_filters import install_client_error_filters
    from integrations.log_masking import install_log_masking

    level = gateway.log_level if command == "scheduler" else "WARNING"
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_client_error_filters()  # first, as in python -m channels: the masking drops the exception
    install_log_masking()
    # One line per delivery is the gateway's habit; a campaign counts them instead.
    logging.getLogger("channels.delivery").setLevel(max(logging.WARNING, logging.getLogger().level))


async def _command(args: argparse.Namespace, gateway: GatewayConfig, config: EngineConfig,
                   sources: SourcesFactory) -> int:
    # The modules and settings loaded so far live as long as the process: kept out of the cyclic
    # collector's passes, which a campaign's many short-lived tasks trigger often.
    gc.freeze()
    redis = gateway_redis(gateway)
    try:
        campaigns = Campaigns(redis)
        if args.command == "list":
            return _print_list(await campaign_list(campaigns))
        if args.command in ("status", "report"):
            report = await campaign_report(campaigns, args.campaign_id)
            if report is None:
                print(f"no campaign {args.campaign_id!r} (see `list`)", file=sys.stderr)
                return NOT_FOUND
            if args.command == "status":
                print(_status_line(report))
            elif args.json:
                print(json.dumps(report, ensure_ascii=False, indent=2))
            else:
                print(render_report(report))
            return OK
        async with standalone_deliverer(gateway, redis) as deliverer, sources(redis) as source:
            engine = Engine(redis, deliverer, config,
                            QuietHours(gateway.delivery_quiet_hours, gateway.timezone),
                            notice_limits=dict(gateway.delivery_rate_limits))
            if args.command == "scheduler":
                return await _scheduler(engine, source, config, gateway.timezone)
            if args.command == "work":
                return await _work(args.campaign_id, engine, source)
            return await _run(args, engine, source, gateway.timezone)
    except Exception as exc:  # noqa: BLE001 - one clear line for the operator, details in the log
        log.debug("command failed", exc_info=True)
        print(f"broadcast {args.command} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return FAILED
    finally:
        await redis.aclose()


async def _run(args: argparse.Namespace, engine: Engine, source: Any, timezone: str) -> int:
    now = datetime.fromtimestamp(engine.clock(), ZoneInfo(timezone))
    plans = await source.plans(args.kind, outage_id=args.outage_id, due_within=args.due_within,
                               now=now)
    if not plans:
        print(f"no {args.kind} campaign is due now")
        return OK
    for plan in plans:
        if args.dry_run:
            print(_render_dry_run(plan, await engine.dry_run(plan, source)))
            continue
        await engine.open(plan)
        helpers = [await asyncio.create_subprocess_exec(
            sys.executable, "-m", "channels.broadcast", "work", plan.campaign_id,
            stdout=asyncio.subprocess.DEVNULL) for _ in range(args.workers - 1)]
        async with following_reports(engine.redis, engine.config.failures_kept):
            async with _progress(engine.campaigns, plan.campaign_id):
                status = await engine.run(plan, source)
                codes = [await helper.wait() for helper in helpers]
        if any(codes):
            print(f"broadcast run: a worker process exited with {max(codes)}", file=sys.stderr)
            return FAILED
        _print_outcome(await campaign_report(engine.campaigns, plan.campaign_id), status)
    return OK


async def _work(campaign_id: str, engine: Engine, source: Any) -> int:
    """Send (or resume) one campaign in this process: the ``--workers`` helpers, or an operator
    finishing a campaign without waiting for the scheduler."""
    meta = await engine.campaigns.meta(campaign_id)
    if meta is None:
        print(f"no campaign {campaign_id!r} (see `list`)", file=sys.stderr)
        return NOT_FOUND
    planning = None
    if meta.get("planned") != "1" and not await engine.planner_active(campaign_id):
        planning = asyncio.create_task(engine.plan_audience(plan_from_meta(meta), source))
    try:
        status = await engine.work(campaign_id, planning=planning)
    finally:
        if planning is not None and not planning.done():
            planning.cancel()
    _print_outcome(await campaign_report(engine.campaigns, campaign_id), status)
    return OK


def _print_outcome(report: dict[str, Any] | None, status: str) -> None:
    print(render_report(report or {}))
    if status == "waiting":
        print(f"  {report['open'] if report else '?'} recipients wait (quiet hours, a provider's "
              f"pause, a retry); the scheduler sends them when due, or `run` again then.")
    elif status == "unplanned":
        print("  the audience was not read whole; `run` again to resume.")


@contextlib.asynccontextmanager
async def _progress(campaigns: Campaigns, campaign_id: str) -> AsyncIterator[None]:
    """A tqdm progress bar (on a terminal) of the finished recipients while the block runs."""
    from tqdm import tqdm

    bar = tqdm(total=0, desc=campaign_id, unit="notice", file=sys.stderr, disable=None,
               dynamic_ncols=True)

    async def follow() -> None:
        while True:
            counters = await campaigns.counters(campaign_id)
            audience = counters.get("audience")
            bar.total = audience
            bar.n = audience - counters.get("open")
            bar.refresh()
            await asyncio.sleep(0.5)

    task = asyncio.create_task(follow())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        with contextlib.suppress(Exception):
            counters = await campaigns.counters(campaign_id)
            bar.total, bar.n = counters.get("audience"), counters.get("audience") - counters.get("open")
        bar.close()


async def _scheduler(engine: Engine, source: Any, config: EngineConfig, timezone: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await Scheduler(engine, source, config, timezone).run_forever(stop)
    return OK


def _render_dry_run(plan: Any, dry: DryRun) -> str:
    lines = [f"campaign {plan.campaign_id}  {plan.title}  (dry run: nothing sent or recorded)",
             f"  audience {dry.audience}"]
    lines += [f"  would send by {channel}: {n}" for channel, n in sorted(dry.channels.items())]
    lines.append("  skipped: " + ", ".join(f"{reason} {dry.skipped.get(reason, 0)}"
                                           for reason in SKIP_REASONS))
    return "\n".join(lines)


def _status_line(report: dict[str, Any]) -> str:
    finished = report["audience"] - report["open"]
    held = ", ".join(f"{k} {v}" for k, v in sorted(report["held"].items()))
    return (f"{report['campaign_id']}: {report['state']}, {finished}/{report['audience']} finished"
            f"{'' if report['audience_complete'] else ' (audience still being read)'}"
            f"{f', held: {held}' if held else ''}; sent {report['totals']['sent']}, "
            f"failed {report['totals']['failed']}, skipped {report['totals']['skipped']}")


def _print_list(campaigns: list[dict[str, Any]]) -> int:
    if not campaigns:
        print("no campaigns yet")
    for c in campaigns:
        print(f"{c['campaign_id']:<40} {c['state']:<9} {c['audience'] - c['open']:>7}/"
              f"{c['audience']:<7} {c['created_at'] or '':<25} {c['title'] or ''}")
    return OK


if __name__ == "__main__":
    sys.exit(main(configure_logging=True))

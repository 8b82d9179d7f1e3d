"""The broadcasts' configuration, read from the environment in one place with documented defaults.

Audience and timing (read by :mod:`channels.broadcast.sources`):

* ``BROADCAST_OUTAGE_NOTICE_DAYS`` [the 十项承诺 ``planned_outage_notice_days`` of
  ``actions/config/service_commitments.yml`` (``SERVICE_COMMITMENTS_FILE``), 7]: a planned
  outage gets its first notice once it starts within this many days.
* ``BROADCAST_OUTAGE_IMMINENT_HOURS`` [24]: the second ("imminent") notice of a planned outage,
  once it starts within this many hours; 0 turns that stage off.
* ``BROADCAST_DUE_REMINDER_DAYS`` [3]: the due-date reminder goes to unpaid bills due within
  this many days (``run due_reminder --due-within`` overrides it).
* ``BROADCAST_RESTORATION_LOOKBACK_HOURS`` [24]: ``run restoration`` announces the outages
  restored within this many hours.
* ``BROADCAST_LOW_BALANCE_YUAN`` [100]: prepaid accounts whose credit is below this get the
  low-balance notice of the arrears campaign.
* ``BROADCAST_CHANNEL_PREFERENCE`` [``last_used``]: which conversation of a customer comes first;
  ``last_used`` (the latest inbound message, ``pd:seen:<conversation>``), or an order of
  channels such as ``wechat,sms,web`` (last used breaks ties within a channel).
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import yaml

from channels.config_error import ConfigError
from integrations.env import env_number
from integrations.rate_limit import Rate, parse_rate

CHANNELS = ("wechat", "sms", "web")
LAST_USED = "last_used"
DEFAULT_COMMITMENTS_FILE = Path(__file__).resolve().parents[2] / "actions" / "config" / "service_commitments.yml"
DEFAULT_NOTICE_DAYS = 7


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    return env_number(env, name, default, low, high, error=ConfigError)


def commitment_notice_days(env: Mapping[str, str]) -> int:
    """``planned_outage_notice_days`` of the service commitments file (7 when absent)."""
    path = Path(env.get("SERVICE_COMMITMENTS_FILE", "").strip() or DEFAULT_COMMITMENTS_FILE)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return DEFAULT_NOTICE_DAYS
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    value = data.get("planned_outage_notice_days", DEFAULT_NOTICE_DAYS) if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 60:
        raise ConfigError(f"{path}: planned_outage_notice_days must be a whole number of days (1-60)")
    return value


def parse_preference(raw: str) -> tuple[str, ...]:
    """``last_used`` → ``()``; ``"wechat,sms,web"`` → that order (unnamed channels go last)."""
    text = raw.strip().lower()
    if text in ("", LAST_USED):
        return ()
    order = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [p for p in order if p not in CHANNELS]
    if unknown or not order:
        raise ConfigError(f"BROADCAST_CHANNEL_PREFERENCE must be {LAST_USED} or an order of "
                          f"{','.join(CHANNELS)}, got {raw!r}")
    return order


@dataclass(frozen=True)
class BroadcastConfig:
    """Every broadcast setting (see the module docstring for the variables and defaults)."""

    outage_notice_days: int = DEFAULT_NOTICE_DAYS
    outage_imminent_hours: int = 24
    due_reminder_days: int = 3
    restoration_lookback_hours: int = 24
    low_balance_yuan: Decimal = Decimal("100")
    channel_preference: tuple[str, ...] = ()  # () = last used first

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "BroadcastConfig":
        """Read and validate the variables; a bad value raises :class:`ConfigError` (one line)."""
        env = os.environ if env is None else env
        raw_low = env.get("BROADCAST_LOW_BALANCE_YUAN", "").strip() or "100"
        try:
            low_balance = Decimal(raw_low)
        except InvalidOperation:
            raise ConfigError(f"BROADCAST_LOW_BALANCE_YUAN must be an amount in yuan, got {raw_low!r}") from None
        if not low_balance.is_finite() or not Decimal("0") < low_balance <= Decimal("100000"):
            raise ConfigError(f"BROADCAST_LOW_BALANCE_YUAN must be between 0 and 100000, got {raw_low}")
        notice_days = _int(env, "BROADCAST_OUTAGE_NOTICE_DAYS", commitment_notice_days(env), 1, 60)
        return cls(
            outage_notice_days=notice_days,
            outage_imminent_hours=_int(env, "BROADCAST_OUTAGE_IMMINENT_HOURS", 24, 0, 24 * notice_days),
            due_reminder_days=_int(env, "BROADCAST_DUE_REMINDER_DAYS", 3, 0, 31),
            restoration_lookback_hours=_int(env, "BROADCAST_RESTORATION_LOOKBACK_HOURS", 24, 1, 24 * 30),
            low_balance_yuan=low_balance,
            channel_preference=parse_preference(env.get("BROADCAST_CHANNEL_PREFERENCE", "")),
        )


# ---- the engine's settings (channels.broadcast.engine and .scheduler) -------------------------

KINDS = ("bill_issued", "due_reminder", "arrears", "outage", "restoration")
DEFAULT_RATES = "wechat=50/s,sms=20/s,web=off"
DEFAULT_SCHEDULE = "bill_issued=09:00;due_reminder=09:30;arrears=10:00;outage=*/10m;restoration=*/5m"


@dataclass(frozen=True)
class Slot:
    """When a kind's campaigns are planned: daily at ``daily`` ("HH:MM", local time) or every
    ``every`` seconds."""

    kind: str
    daily: tuple[int, int] | None = None
    every: int | None = None


def parse_rates(raw: str) -> dict[str, Rate | None]:
    """``"wechat=50/s,sms=20/s,web=off"`` → {channel: Rate or None (no limit)}."""
    rates: dict[str, Rate | None] = {}
    for entry in (e.strip() for e in raw.replace(";", ",").split(",")):
        if not entry:
            continue
        channel, sep, rate = entry.partition("=")
        channel = channel.strip().lower()
        if not sep or channel not in CHANNELS:
            raise ConfigError(f"BROADCAST_RATES: expected channel=rate entries ({', '.join(CHANNELS)}; "
                              f"rate such as 50/s or off), got {entry!r}")
        try:
            rates[channel] = parse_rate(rate, "BROADCAST_RATES")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return rates


def parse_schedule(raw: str) -> tuple[Slot, ...]:
    """``"bill_issued=09:00;outage=*/10m;arrears=off"`` → slots (``off`` drops the kind)."""
    slots: list[Slot] = []
    for entry in (e.strip() for e in raw.replace(",", ";").split(";")):
        if not entry:
            continue
        kind, sep, spec = (part.strip().lower() for part in entry.partition("="))
        if not sep or kind not in KINDS:
            raise ConfigError(f"BROADCAST_SCHEDULE: expected kind=HH:MM, kind=*/N(m|h) or kind=off "
                              f"with kind one of {', '.join(KINDS)}; got {entry!r}")
        if spec == "off":
            continue
        daily = re.fullmatch(r"(\d{1,2}):(\d{2})", spec)
        every = re.fullmatch(r"\*/(\d{1,4})(m|h)", spec)
        if daily and int(daily[1]) < 24 and int(daily[2]) < 60:
            slots.append(Slot(kind, daily=(int(daily[1]), int(daily[2]))))
        elif every and int(every[1]) > 0:
            slots.append(Slot(kind, every=int(every[1]) * (60 if every[2] == "m" else 3600)))
        else:
            raise ConfigError(f"BROADCAST_SCHEDULE: {kind} needs HH:MM, */N(m|h) or off, got {spec!r}")
    return tuple(slots)


@dataclass(frozen=True)
class EngineConfig:
    """How campaigns are sent and scheduled. Environment variables (defaults in brackets):

    BROADCAST_RATES [wechat=50/s,sms=20/s,web=off]: per provider, one token bucket in Redis shared
    by every worker (``off``: no limit); BROADCAST_CONCURRENCY [256]: deliveries in flight per
    worker process (as batches: CONCURRENCY // BATCH + 1 of them, at least 2); BROADCAST_BATCH
    [100]: recipients per entry of the campaign stream (a worker takes one entry at a time);
    BROADCAST_PAGE_SIZE [500]: recipients asked of the backends at a time while planning;
    BROADCAST_CLAIM_IDLE_SECONDS [60]: a recipient taken by a worker that has not finished it in
    this time (a killed worker) is taken over by another; BROADCAST_MAX_ATTEMPTS [5]: transient
    failures before a recipient is recorded as failed; BROADCAST_THROTTLE_SECONDS [30]: how long a
    provider is paused for every worker after it answered "throttled" without saying until when;
    BROADCAST_FAILURES_KEPT [20]: first failures kept per campaign for the report;
    BROADCAST_SCHEDULE [bill_issued=09:00;due_reminder=09:30;arrears=10:00;outage=*/10m;
    restoration=*/5m]: when the scheduler plans each kind (local time, POWERDESK_TIMEZONE);
    BROADCAST_SCHEDULER_TICK_SECONDS [5]: how often the scheduler looks at its slots and at the
    unfinished campaigns.
    """

    rates: dict[str, Rate | None] = field(default_factory=lambda: parse_rates(DEFAULT_RATES))
    concurrency: int = 256
    batch: int = 100
    page_size: int = 500
    claim_idle_seconds: float = 60.0
    max_attempts: int = 5
    throttle_seconds: float = 30.0
    failures_kept: int = 20
    schedule: tuple[Slot, ...] = field(default_factory=lambda: parse_schedule(DEFAULT_SCHEDULE))
    tick_seconds: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "EngineConfig":
        """Read and validate the variables; a bad value raises :class:`ConfigError` (one line)."""
        env = os.environ if env is None else env
        return cls(
            rates=parse_rates(env.get("BROADCAST_RATES", "").strip() or DEFAULT_RATES),
            concurrency=_int(env, "BROADCAST_CONCURRENCY", 256, 1, 4096),
            batch=_int(env, "BROADCAST_BATCH", 100, 1, 5000),
            page_size=_int(env, "BROADCAST_PAGE_SIZE", 500, 1, 10000),
            claim_idle_seconds=env_number(env, "BROADCAST_CLAIM_IDLE_SECONDS", 60.0, 0.1, 86400.0,
                                          parse=float, error=ConfigError),
            max_attempts=_int(env, "BROADCAST_MAX_ATTEMPTS", 5, 1, 100),
            throttle_seconds=env_number(env, "BROADCAST_THROTTLE_SECONDS", 30.0, 0.1, 86400.0,
                                        parse=float, error=ConfigError),
            failures_kept=_int(env, "BROADCAST_FAILURES_KEPT", 20, 0, 1000),
            schedule=parse_schedule(env.get("BROADCAST_SCHEDULE", "").strip() or DEFAULT_SCHEDULE),
            tick_seconds=env_number(env, "BROADCAST_SCHEDULER_TICK_SECONDS", 5.0, 0.05, 3600.0,
                                    parse=float, error=ConfigError),
        )

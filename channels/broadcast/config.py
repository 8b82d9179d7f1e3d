"""The broadcasts' configuration, read from the environment in one place with documented defaults.

Audience and timing (read by :mod:`channels.broadcast.sources`):

* ``BROADCAST_OUTAGE_NOTICE_DAYS`` [the 十项承诺 ``planned_outage_notice_days`` of
  ``actions/config/service_commitments.yml`` (``SERVICE_COMMITMENTS_FILE``), 7]: a planned
  outage gets its first notice once it starts within this many days.
* ``BROADCAST_OUTAGE_IMMINENT_HOURS`` [24]: the second ("imminent") notice of a planned outage,
  once it starts within this many hours; 0 turns that stage off.
* ``BROADCAST_DUE_REMINDER_DAYS`` [3]: the due-date reminder goes to unpaid bills due within
  this many days (``run due_reminder --due-within`` overrides it).
* ``BROADCAST_LOW_BALANCE_YUAN`` [50]: prepaid accounts whose credit is below this get the
  low-balance notice of the arrears campaign.
* ``BROADCAST_CHANNEL_PREFERENCE`` [``last_used``]: which conversation of a customer comes first;
  ``last_used`` (the latest inbound message, ``pd:seen:<conversation>``), or an order of
  channels such as ``wechat,sms,web`` (last used breaks ties within a channel).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import yaml

from channels.config_error import ConfigError
from integrations.env import env_number

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
    low_balance_yuan: Decimal = Decimal("50")
    channel_preference: tuple[str, ...] = ()  # () = last used first

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "BroadcastConfig":
        """Read and validate the variables; a bad value raises :class:`ConfigError` (one line)."""
        env = os.environ if env is None else env
        raw_low = env.get("BROADCAST_LOW_BALANCE_YUAN", "").strip() or "50"
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
            low_balance_yuan=low_balance,
            channel_preference=parse_preference(env.get("BROADCAST_CHANNEL_PREFERENCE", "")),
        )

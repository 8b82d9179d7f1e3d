"""Typed configuration of the hand-off, read from the environment in one place.

Variables (defaults in brackets): ``HANDOFF_HOURS`` [08:00-20:00 on Chinese working days; see
:mod:`channels.handoff.hours`], ``HANDOFF_UNCLAIMED_MINUTES`` [5: a waiting customer nobody
claimed by then gets an update and the offer of a callback ticket; 0 disables; checked every
``HANDOFF_UNCLAIMED_CHECK_SECONDS`` [15]], ``HANDOFF_CLAIM_IDLE_SECONDS`` [60: a request taken
by a gateway instance that died is taken over by another after this long], ``HANDOFF_GROUP``
[handoff: the consumer group of ``pd:handoff:requests``, one per deployment of gateways sharing
a Redis], ``HANDOFF_RATING_MINUTES`` [30: how long a 1-5 reply after a hand-off still counts as
the rating], and the tickets backend of the callback tickets: ``TICKETS_API_URL``
[http://127.0.0.1:8100/tickets] with ``BACKEND_TIMEOUT_SECONDS`` [3].
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from channels.config_error import ConfigError
from channels.handoff.hours import BusinessHours
from integrations.config import BackendsConfig
from integrations.env import env_number


@dataclass(frozen=True)
class HandoffConfig:
    hours: BusinessHours = field(default_factory=BusinessHours)
    unclaimed_minutes: float = 5.0
    claim_idle_seconds: float = 60.0
    rating_minutes: float = 30.0
    unclaimed_check_seconds: float = 15.0
    group: str = "handoff"
    tickets_url: str = BackendsConfig.tickets_url
    backend_timeout_seconds: float = BackendsConfig.timeout_s

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, timezone: str = "Asia/Shanghai") -> "HandoffConfig":
        """Read the variables; a bad value raises :class:`ConfigError` naming it."""
        env = os.environ if env is None else env
        try:
            hours = BusinessHours.parse(env.get("HANDOFF_HOURS", ""), timezone)
            backends = BackendsConfig.from_env(env)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        group = (env.get("HANDOFF_GROUP") or "").strip() or "handoff"
        if not group.replace("-", "").replace("_", "").isalnum() or not group.isascii() or len(group) > 64:
            raise ConfigError(f"HANDOFF_GROUP must be letters, digits, - or _ (up to 64), got {group!r}")
        return cls(
            hours=hours,
            group=group,
            unclaimed_minutes=env_number(env, "HANDOFF_UNCLAIMED_MINUTES", 5.0, 0.0, 24 * 60.0,
                                         parse=float, error=ConfigError),
            claim_idle_seconds=env_number(env, "HANDOFF_CLAIM_IDLE_SECONDS", 60.0, 1.0, 3600.0,
                                          parse=float, error=ConfigError),
            unclaimed_check_seconds=env_number(env, "HANDOFF_UNCLAIMED_CHECK_SECONDS", 15.0, 0.05, 3600.0,
                                               parse=float, error=ConfigError),
            rating_minutes=env_number(env, "HANDOFF_RATING_MINUTES", 30.0, 1.0, 7 * 24 * 60.0,
                                      parse=float, error=ConfigError),
            tickets_url=backends.tickets_url,
            backend_timeout_seconds=backends.timeout_s,
        )

"""Prometheus metrics of the agent console (served on the gateway's admin ``/metrics``)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge

LOGINS = Counter("powerdesk_console_logins_total",
                 "Console login attempts, by outcome (ok, invalid, limited)", ["outcome"])
LIVE_SOCKETS = Gauge("powerdesk_console_live_sockets", "Open console live sockets in this process")
LIVE_FRAMES = Counter("powerdesk_console_live_frames_total",
                      "Hand-off events pushed to console sockets of this process")
LIVE_DROPPED = Counter("powerdesk_console_live_dropped_total",
                       "Console sockets closed because they could not keep up")
ERRORS = Counter("powerdesk_console_errors_total",
                 "Console failures answered 503 or retried (Redis, the events tail), by place", ["where"])

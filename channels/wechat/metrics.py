"""Prometheus metrics of the WeChat channel (exposed by the gateway's /metrics)."""
from __future__ import annotations

from prometheus_client import Counter, Histogram

PUSHES = Counter("powerdesk_wechat_pushes_total", "WeChat pushes received, by outcome",
                 ["outcome"])  # accepted | duplicate | forged | malformed | unavailable
SENDS = Counter("powerdesk_wechat_sends_total", "Customer-service messages sent, by outcome",
                ["outcome"])  # ok | undeliverable | failed
ACK_SECONDS = Histogram("powerdesk_wechat_ack_seconds", "Time to acknowledge a WeChat push",
                        buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5))
NOTICE_UNCONFIRMED = Counter(
    "powerdesk_wechat_notice_unconfirmed_total",
    "Keyed notices not sent again because an earlier customer-service send of them has no "
    "recorded outcome (its worker died mid-call)")

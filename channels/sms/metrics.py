"""Prometheus metrics of the SMS channel (exposed by the gateway's /metrics)."""
from __future__ import annotations

from prometheus_client import Counter

# kind: up | report; outcome: accepted | duplicate | forged | malformed | error
CALLBACKS = Counter("powerdesk_sms_callbacks_total", "SMS provider callbacks received",
                    ["provider", "kind", "outcome"])
ATTEMPTS = Counter("powerdesk_sms_send_attempts_total", "SMS send attempts, by provider outcome",
                   ["provider", "outcome"])  # sent | throttled | retry | permanent
SEGMENTS = Counter("powerdesk_sms_segments_total", "Billed SMS segments sent (70/67 rule)",
                   ["provider", "kind"])
HELD = Counter("powerdesk_sms_held_total", "SMS held back in the outbox, by reason",
               ["reason"])  # quiet_hours | rate_limit | suppressed_optout
UNKNOWN_OUTCOME = Counter("powerdesk_sms_unknown_outcome_total",
                          "SMS taken again after an earlier attempt's worker stopped before "
                          "recording the provider's answer (reconciled before any resend)")
RECONCILED = Counter("powerdesk_sms_reconciled_total",
                     "Lost attempts looked up in the provider's query API, by answer",
                     ["provider", "answer"])  # found | not_found

"""Prometheus metrics of the hand-off (served on the gateway's admin ``/metrics``)."""
from __future__ import annotations

from prometheus_client import Counter

EVENTS = Counter("powerdesk_handoff_events_total",
                 "Hand-off steps (requested, after_hours, taken_over, claimed, transferred, "
                 "closed, rated, unclaimed, callback)", ["event"])
MESSAGES = Counter("powerdesk_handoff_messages_total",
                   "Messages of handed-off conversations, by sender", ["sender"])
RATINGS = Counter("powerdesk_handoff_ratings_total", "Customer ratings of hand-offs, by score",
                  ["score"])
REQUESTS = Counter("powerdesk_handoff_requests_total",
                   "Entries of pd:handoff:requests handled, by outcome", ["outcome"])
ERRORS = Counter("powerdesk_handoff_errors_total",
                 "Hand-off failures (logged; the conversation goes on)", ["kind"])

"""Prometheus metrics of the gateway core (channels add their own ``powerdesk_<channel>_*``)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_IN = Counter("powerdesk_gateway_messages_in_total",
                      "Customer messages received by the router, by channel", ["channel"])
MESSAGES_OUT = Counter("powerdesk_gateway_messages_out_total",
                       "Bot replies returned by the router, by channel", ["channel"])
REJECTED = Counter("powerdesk_gateway_rejected_input_total",
                   "Messages answered by the gateway itself, by channel and reason (empty, too_long)",
                   ["channel", "reason"])
BUSY_REPLIES = Counter("powerdesk_gateway_busy_replies_total",
                       "Busy replies sent because Rasa failed, by channel and reason",
                       ["channel", "reason"])
EMPTY_ANSWERS = Counter("powerdesk_gateway_rasa_empty_answers_total",
                        "Rasa answered nothing; the gateway apologised instead", ["channel"])
ERRORS = Counter("powerdesk_gateway_errors_total",
                 "Unexpected errors inside the gateway, by place", ["where"])
RASA_LATENCY = Histogram("powerdesk_gateway_rasa_latency_seconds",
                         "Time of one Rasa REST webhook call, by outcome", ["outcome"],
                         buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8,
                                  10, 15, 30))
RASA_FAILOVERS = Counter("powerdesk_gateway_rasa_failovers_total",
                         "Turns whose Rasa node failed, by what the pool did: retried (not recorded), "
                         "from_tracker (recorded: answered from it), unknown (tracker unreadable: busy reply)",
                         ["outcome"])
RASA_NODE_UP = Gauge("powerdesk_gateway_rasa_node_up", "1 while a Rasa node of the pool is in rotation", ["node"])
LOCK_WAIT = Histogram("powerdesk_gateway_conversation_lock_wait_seconds",
                      "Time spent waiting for a conversation's turn",
                      buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 20))
DELIVERIES = Counter("powerdesk_gateway_deliveries_total",
                     "Outbound deliveries (channels.delivery), by channel, purpose, status "
                     "(sent, queued, skipped, failed) and reason", ["channel", "purpose", "status", "reason"])
OUTBOUND_REQUESTS = Counter("powerdesk_gateway_outbound_requests_total",
                            "Entries of the pd:outbound:requests stream handled, by outcome "
                            "(a delivery status, or malformed)", ["outcome"])

"""Run by test_rasa_env.py under the Rasa environment's Python (aiohttp 3.9): every client once.

``python rasa_env_smoke.py <backends base url>`` prints one JSON line of results.
"""
from __future__ import annotations

import asyncio
import json
import sys
import uuid
from datetime import datetime, timedelta, timezone

import aiohttp

from integrations.clients import BackendClients
from integrations.config import BackendsConfig
from integrations.errors import BackendUnavailable, NotFound
from integrations.tickets import NewTicket


async def main(base_url: str) -> dict:
    clients = BackendClients.from_config(BackendsConfig.for_base_url(base_url, 3.0))
    dead = BackendClients.from_config(BackendsConfig.for_base_url("http://127.0.0.1:9", 1.0))
    try:
        account = await clients.billing.get_account("3201234567")
        bills = await clients.billing.list_bills("3201234567", limit=2)
        verified = await clients.billing.verify_phone("3201234567", "5678")
        try:
            await clients.billing.get_account("3999999999")
            not_found = False
        except NotFound:
            not_found = True
        try:
            await dead.outage.list_areas()
            unavailable = False
        except BackendUnavailable:
            unavailable = True
        promised = (datetime.now(timezone(timedelta(hours=8))) + timedelta(minutes=45)).isoformat()
        ticket = await clients.tickets.create_ticket(NewTicket(
            kind="repair", category="no_power", description="smoke", severity="normal",
            conversation_id=f"web:smoke-{uuid.uuid4().hex[:8]}", promised_by=promised,
            area="百家湖社区"))
        return {
            "aiohttp": aiohttp.__version__,
            "account": account.name,
            "bill_sum_ok": all(b.amount == sum(x.amount for x in (*b.tiers, *b.time_of_use)) for b in bills),
            "verified": verified,
            "not_found": not_found,
            "unavailable": unavailable,
            "areas": len(await clients.outage.list_areas()),
            "halls": len(await clients.queue.list_halls()),
            "ticket": ticket.ticket_id[:2],
            "applications": len(await clients.applications.applications_of("3201234567")),
        }
    finally:
        await clients.close()
        await dead.close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1])), ensure_ascii=False))

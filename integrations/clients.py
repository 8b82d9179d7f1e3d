"""All five backend clients, built from one ``BackendsConfig`` and closed together."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from integrations.applications import ApplicationsClient, HttpApplicationsClient
from integrations.billing import BillingClient, HttpBillingClient
from integrations.config import BackendsConfig
from integrations.outage import HttpOutageClient, OutageClient
from integrations.queue import HttpQueueClient, QueueClient
from integrations.tickets import HttpTicketsClient, TicketsClient


@dataclass
class BackendClients:
    billing: BillingClient
    outage: OutageClient
    queue: QueueClient
    tickets: TicketsClient
    applications: ApplicationsClient

    @classmethod
    def from_config(cls, config: BackendsConfig) -> "BackendClients":
        """HTTP clients for every backend (no connection is made until the first call)."""
        t, r = config.timeout_s, config.retries_for_reads
        return cls(
            billing=HttpBillingClient(config.billing_url, t, r),
            outage=HttpOutageClient(config.outage_url, t, r),
            queue=HttpQueueClient(config.queue_url, t, r),
            tickets=HttpTicketsClient(config.tickets_url, t, r),
            applications=HttpApplicationsClient(config.applications_url, t, r),
        )

    async def close(self) -> None:
        """Close every client's HTTP session."""
        await asyncio.gather(self.billing.close(), self.outage.close(), self.queue.close(),
                             self.tickets.close(), self.applications.close())

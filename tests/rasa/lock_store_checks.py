"""Scenarios of bot/lock_store.py run under the Rasa environment against a real Redis (one server
or a Cluster): ``lock_store_checks.py <REDIS_URL>``; prints one JSON object (the observations) on
its last line for tests/rasa/test_lock_store.py to assert on."""
from __future__ import annotations

import asyncio
import json
import sys

from rasa.core.lock_store import LockStore
from rasa.utils.endpoints import EndpointConfig
from redis.crc import key_slot

from bot.tracker_store import PowerDeskTrackerStore
from integrations.redis_url import sync_client


async def main(url: str) -> dict:
    # Built as Rasa builds it from bot/endpoints.yml's lock_store section.
    store = LockStore.create(EndpointConfig(url=url, type="bot.lock_store.PowerDeskLockStore",
                                            key_prefix="pdtest"))
    red = sync_client(url, decode_responses=True)
    out: dict = {"class": type(store).__name__}
    cid = "wechat:oLock{1}"
    key = store.key_of(cid)
    tracker_keys = PowerDeskTrackerStore(host=url, key_prefix="pdtest").keys_of(cid)
    out["key"] = key
    out["same_slot_as_tracker"] = {key_slot(k.encode()) for k in (key, *tracker_keys)} == {
        key_slot(key.encode())}

    order: list[str] = []

    async def turn(name: str, hold: float) -> None:
        async with store.lock(cid, lock_lifetime=30, wait_time_in_seconds=0.05):
            order.append(f"{name} in")
            await asyncio.sleep(hold)
            if name == "first":  # the second turn is waiting by now
                out["ttl_while_held"] = red.ttl(key)
                out["tickets_while_held"] = len(json.loads(red.get(key))["tickets"])
            order.append(f"{name} out")

    first = asyncio.create_task(turn("first", 0.5))
    await asyncio.sleep(0.1)
    await asyncio.gather(first, turn("second", 0.0))
    out["order"] = order
    out["exists_after"] = bool(red.exists(key))

    # A lock whose holder died: its key expires by itself a minute after the last ticket.
    store.issue_ticket("wechat:oDead", lock_lifetime=5)
    out["dead_ttl"] = red.ttl(store.key_of("wechat:oDead"))
    red.delete(store.key_of("wechat:oDead"))
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))))

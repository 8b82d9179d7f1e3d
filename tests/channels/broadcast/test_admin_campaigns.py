"""The admin port serves the campaign list and each campaign's report (the CLI's --json)."""
from __future__ import annotations

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from channels.app import create_admin_app
from channels.broadcast.campaigns import Campaigns
from channels.broadcast.report import campaign_report
from channels.keys import REDIS_KEY
from tests.channels.broadcast.engine_support import Plan, Recipient, Source, wechat_audience


async def test_campaign_list_and_report_and_404(make_engine, fakes, redis):
    audience = wechat_audience(5) + [Recipient("3300000000", ())]
    assert await (await make_engine()).run(Plan(), Source(audience)) == "done"
    gateway = web.Application()
    gateway[REDIS_KEY] = redis
    server = TestServer(create_admin_app(gateway), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(server.make_url("/admin/campaigns")) as response:
                assert response.status == 200
                listing = await response.json()
            assert [(c["campaign_id"], c["state"], c["audience"], c["title"])
                    for c in listing["campaigns"]] == [
                ("outage:O-1:notice", "done", 6, "幸福小区计划停电通知")]
            async with session.get(server.make_url("/admin/campaigns/outage:O-1:notice")) as response:
                assert response.status == 200
                report = await response.json()
            assert report == await campaign_report(Campaigns(redis), "outage:O-1:notice")
            assert report["channels"]["wechat"]["sent"] == 5
            assert report["channels"]["none"]["skipped"] == {"no_channel": 1}
            async with session.get(server.make_url("/admin/campaigns/outage:O-2:notice")) as response:
                assert response.status == 404
                assert await response.json() == {"error": "no such campaign"}
    finally:
        await server.close()

"""A customer message whose answer could not be completed gets the busy reply, never silence."""
from __future__ import annotations

import asyncio
import secrets
import time

from channels.router import BUSY_TEXT


async def test_a_turn_cut_short_is_answered_with_the_busy_reply(make_gateways):
    # Rasa answers "慢3" after 3 s; the job timeout (1 s) cuts the turn short first.
    gw = await make_gateways(WECHAT_ENCRYPT_MODE="plain", WECHAT_JOB_TIMEOUT_SECONDS="1",
                             RASA_TIMEOUT_SECONDS="30")
    p = gw.pusher()
    user = "o" + secrets.token_hex(14)
    assert await p.post(gw.session, p.text_fields(user, "慢3")) == (200, "success")
    deadline = time.monotonic() + 10
    while not gw.wechat_api.texts_to(user):
        assert time.monotonic() < deadline, "no answer"
        await asyncio.sleep(0.05)
    assert gw.wechat_api.texts_to(user) == [BUSY_TEXT]

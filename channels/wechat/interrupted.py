"""What the WeChat channel does with a job the dispatcher could not finish.

The dispatcher (:mod:`channels.dispatcher`) hands over a job whose processing was cut short (the
instance crashed or was stopped mid-job) or whose handler failed or timed out.  A customer's
message or menu click is answered with the gateway's busy reply, asking them to send it again;
it is never re-run, because Rasa may already have acted on it (a repair ticket filed, a queue
number taken) and part of the answer may already have reached the customer: a prompt to repeat
is better than a repeated action or a duplicate answer.  A fixed notice or agent replies
(``notice``/``outbound``) involve nothing but sending, so they are sent again: at worst the
customer sees a text twice, rather than never seeing an agent's answer.
"""
from __future__ import annotations

import logging
from typing import Any

from channels import metrics
from channels.dispatcher import Handler
from channels.router import BUSY_TEXT

log = logging.getLogger(__name__)

_CUSTOMER_TURNS = ("text", "payload")


class InterruptedJobs:
    """The dispatcher's ``on_interrupted`` for the 公众号 channel; ``handler`` is the channel's
    ordinary job handler (used to send)."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    async def __call__(self, openid: str, job: dict[str, Any]) -> None:
        if job.get("kind") in _CUSTOMER_TURNS:
            metrics.BUSY_REPLIES.labels("wechat", "interrupted").inc()
            await self._handler(openid, {"kind": "notice", "text": BUSY_TEXT})
            return
        log.info("wechat %s job interrupted; sending it again", job.get("kind"))
        await self._handler(openid, job)

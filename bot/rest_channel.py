"""Rasa's REST input channel, with the loaded model moved out of the garbage collector's way
and Rasa's per-turn speed-ups (``bot/rasa_runtime.py``) installed.

The gateway reaches Rasa through the REST channel only (``POST /webhooks/rest/webhook``), so
``bot/credentials.yml`` names this subclass instead of ``rest``: same name, same routes, same
behaviour, except that the gateway's ``metadata["message_id"]`` becomes the message's id. Its
blueprint adds an ``after_server_start`` listener, which Sanic runs after Rasa's
``before_server_start`` listener has loaded the model, and a ``before_server_stop`` listener that
closes the kept connections to the action server (``bot/rasa_action_http.py``).

Why: a loaded model is about 900,000 Python objects tracked by the collector (TensorFlow graphs,
featurizer vocabularies, the domain), and every full collection walks all of them.
Measured on this project's model: a 0.5–1.2 s pause of Rasa's event loop about every 40 s under
load, stalling every conversation in flight. ``gc.freeze()`` moves the objects alive at that
moment into a permanent generation that collections skip; they are still freed by reference
counting when no longer used (a model replaced through the HTTP API), only cycles among them
are no longer collected. The freeze itself costs one pause of about a second, once, right
after start-up.
"""
from __future__ import annotations

import gc
import logging
import time
from typing import Any, Awaitable, Callable

from rasa.core.channels.channel import UserMessage
from rasa.core.channels.rest import RestInput as RasaRestInput
from sanic import Blueprint

from bot import rasa_action_http, rasa_runtime

logger = logging.getLogger(__name__)


def freeze_loaded_objects() -> int:
    """Collect garbage once, then exempt every object still alive from later collections;
    returns how many objects are now frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def gateway_message_id(metadata: Any) -> str | None:
    """The gateway's id of a message (``metadata["message_id"]``, 8-64 characters), if any."""
    value = metadata.get("message_id") if isinstance(metadata, dict) else None
    return value if isinstance(value, str) and 8 <= len(value) <= 64 else None


class RestInput(RasaRestInput):
    """Rasa's REST channel (name ``rest``); freezes the loaded model once the server started,
    and records the gateway's ``metadata["message_id"]`` as the message's id (the ``message_id``
    of its ``UserUttered`` event), so a gateway that lost a node mid-turn can tell from the
    tracker whether the turn happened (see ``channels/rasa_nodes.py``)."""

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        rasa_runtime.install()

        async def with_message_id(message: UserMessage) -> Any:
            message.message_id = gateway_message_id(message.metadata) or message.message_id
            return await on_new_message(message)

        webhook = super().blueprint(with_message_id)

        async def freeze_after_model_load(_app: Any, _loop: Any) -> None:
            started = time.perf_counter()
            frozen = freeze_loaded_objects()
            logger.info("froze %d objects of the loaded model out of garbage collection (%.0f ms)",
                        frozen, 1000 * (time.perf_counter() - started))

        async def close_action_sessions(_app: Any, _loop: Any) -> None:
            await rasa_action_http.close_sessions()

        webhook.listener("after_server_start")(freeze_after_model_load)
        webhook.listener("before_server_stop")(close_action_sessions)
        return webhook

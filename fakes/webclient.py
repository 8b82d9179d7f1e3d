"""A socket.io client speaking the rasa-webchat protocol, for gateway tests and the benchmark."""
from __future__ import annotations

import asyncio
from typing import Any

import socketio


class WebClient:
    """Connects like the rasa-webchat widget; queues what it receives."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.confirms: asyncio.Queue = asyncio.Queue()
        self.uttered: asyncio.Queue = asyncio.Queue()
        self.session_id: str | None = None
        self.sio.on("session_confirm", self.confirms.put)
        self.sio.on("bot_uttered", self.uttered.put)

    async def connect(self, url: str) -> "WebClient":
        await self.sio.connect(url, socketio_path="socket.io", transports=["websocket"])
        return self

    async def session(self, session_id: Any = None, payload: Any = None) -> str:
        """``session_request`` → the confirmed session id (also kept in ``self.session_id``)."""
        await self.sio.emit("session_request",
                            payload if payload is not None else {"session_id": session_id})
        self.session_id = await asyncio.wait_for(self.confirms.get(), 5)
        return self.session_id

    async def say(self, message: Any, session_id: str | None = None, **extra: Any) -> None:
        """``user_uttered`` with the given (or the confirmed) session id."""
        await self.sio.emit("user_uttered", {"message": message,
                                             "session_id": session_id or self.session_id, **extra})

    async def next(self, timeout: float = 5) -> dict[str, Any]:
        return await asyncio.wait_for(self.uttered.get(), timeout)

    async def ask(self, message: str, first_timeout: float = 60, quiet: float = 0.7) -> list[dict]:
        """Say ``message`` and collect every ``bot_uttered`` of the answer (until ``quiet`` s pass)."""
        await self.say(message)
        events = [await self.next(first_timeout)]
        while True:
            try:
                events.append(await self.next(quiet))
            except asyncio.TimeoutError:
                return events

    async def close(self) -> None:
        await self.sio.disconnect()


def texts(events: list[dict[str, Any]]) -> str:
    """All texts of ``events`` joined by newlines."""
    return "\n".join(e.get("text", "") for e in events if isinstance(e.get("text"), str))

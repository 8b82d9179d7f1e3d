"""Fixtures of the broadcast tests (the engine's live in engine_support)."""
from tests.channels.broadcast.engine_support import (  # noqa: F401 - fixtures
    broadcast_redis_url, clock, fakes, gateway_env, make_engine, redis)

"""Lua scripts queued in a pipeline, on one Redis server and on Redis Cluster.

redis-py's ``Script(client=pipe)`` sends ``EVALSHA`` and, on a one-server pipeline, loads the
script before the pipeline runs. A Cluster pipeline refuses ``EVALSHA`` outright (redis-py blocks
it: the script may not be loaded on the node a key maps to), so there the script goes as
``EVAL`` with its body, which every node compiles once and caches. The keys of one call must
still share a hash slot.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import ClusterPipeline
from redis.commands.core import AsyncScript


async def queue_script(pipe: Any, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> None:
    """Queue one call of ``script`` with ``keys`` and ``args`` on ``pipe`` (its answer comes
    with the pipeline's)."""
    if isinstance(pipe, ClusterPipeline):
        pipe.eval(script.script, len(keys), *keys, *args)
    else:
        await script(keys=keys, args=args, client=pipe)

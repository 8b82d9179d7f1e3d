"""Scenarios of the ``graph``, ``http`` and ``tfcall`` speed-ups (bot/rasa_graph_runner.py,
bot/rasa_action_http.py, bot/rasa_tf_call.py) run under the Rasa environment; prints one JSON
object (the observations) on its last line for tests/rasa/test_rasa_speedups.py.

graph: a small graph (a diamond, two targets, an input placeholder) run by Rasa's own
DaskGraphRunner and by the patched one, call for call. http: Rasa's EndpointConfig.request
against a real aiohttp server on loopback that reports the client's port per request. tfcall:
a tf.function with a signature like Rasa's (a list of TensorSpecs with unknown dimensions)
called through DirectCall and through TensorFlow, on batches of several shapes."""
from __future__ import annotations

import asyncio
import copy
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web
from rasa.engine.exceptions import GraphRunError
from rasa.engine.graph import ExecutionContext, GraphComponent, GraphSchema, SchemaNode
from rasa.engine.runner.dask import DaskGraphRunner
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.utils.endpoints import ClientResponseError, EndpointConfig

from bot import rasa_action_http, rasa_graph_runner

CALLS: list[str] = []


class Step(GraphComponent):
    """Joins its inputs into a string, records its node's name; fails on the input "fail"."""

    @classmethod
    def create(cls, config: dict, model_storage: Any, resource: Any, execution_context: ExecutionContext) -> "Step":
        return cls(execution_context.node_name)

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, **inputs: Any) -> str:
        CALLS.append(self.name)
        if "fail" in inputs.values():
            raise RuntimeError("asked to fail")
        return f"{self.name}(" + ",".join(f"{k}={inputs[k]}" for k in sorted(inputs)) + ")"


def node(needs: dict[str, str], target: bool = False) -> SchemaNode:
    return SchemaNode(needs=needs, uses=Step, constructor_name="create", fn="run", config={}, eager=True,
                      is_target=target)


SCHEMA = GraphSchema({
    "a": node({"text": "__message__"}),
    "b": node({"x": "a"}),
    "c": node({"x": "a", "t": "__tracker__"}),
    "d": node({"left": "b", "right": "c"}, target=True),
    "e": node({"x": "c"}, target=True),
    "unused": node({"x": "__message__"}),
})


def runner(storage: LocalModelStorage) -> DaskGraphRunner:
    return DaskGraphRunner(SCHEMA, storage, ExecutionContext(SCHEMA, "m"))


def graph_scenarios(tmp: Path) -> dict[str, Any]:
    storage = LocalModelStorage(tmp)
    stock, patched = runner(storage), runner(storage)
    stock_run = DaskGraphRunner.run
    rasa_graph_runner.install()
    seen: dict[str, Any] = {"graph_patched": DaskGraphRunner.run is not stock_run}
    cases = [
        ({"__message__": "m1", "__tracker__": "t1"}, ["d", "e"]),
        ({"__message__": "m2", "__tracker__": "t2"}, ["d", "e"]),
        ({"__message__": "m3", "__tracker__": "t3"}, ["e"]),
        ({"__message__": "m4"}, ["b"]),
        ({"__message__": "m5", "__tracker__": "t5"}, None),
        ({"__message__": "m6", "__tracker__": "t6"}, ["d", "e"]),
        ({"__message__": "m7", "__tracker__": "t7", "c": "given"}, ["e"]),   # an input replaces a node
        ({"__message__": "m8", "__tracker__": "t8", "c": "given"}, ["e"]),
    ]
    same = []
    for inputs, targets in cases:
        CALLS.clear()
        expected = stock_run(stock, dict(inputs), targets)
        expected_calls = list(CALLS)
        CALLS.clear()
        got = DaskGraphRunner.run(patched, dict(inputs), targets)
        same.append(got == expected and CALLS == expected_calls)
    seen["runs_as_dask"] = same
    seen["plans"] = len(patched.__dict__[rasa_graph_runner.PLANS])
    seen["replayed"] = sorted(len(p.steps) for p in patched.__dict__[rasa_graph_runner.PLANS].values())

    def error(run, inputs, targets) -> str:
        try:
            run(inputs, targets)
        except GraphRunError as e:
            return f"GraphRunError: {e} / {type(e.__cause__).__name__}"
        except Exception as e:  # noqa: BLE001 - the observation is the error's type
            return f"{type(e).__name__}: {e}"
        return "no error"

    seen["errors"] = [
        [error(lambda i, t: stock_run(stock, i, t), inputs, targets),
         error(lambda i, t: DaskGraphRunner.run(patched, i, t), inputs, targets)]
        for inputs, targets in [({"__message__": "fail", "__tracker__": "t"}, ["d", "e"]),
                                ({"__message__": "a", "__tracker__": "t"}, ["d", "e"])]]
    return seen


async def http_scenarios() -> dict[str, Any]:
    ports: list[int] = []
    headers: list[str] = []

    async def webhook(request: web.Request) -> web.Response:
        ports.append(request.transport.get_extra_info("peername")[1])
        headers.append(request.headers.get("Authorization", ""))
        body = await request.json()
        if body.get("reject"):
            return web.json_response({"action_name": body["next_action"], "error": "no"}, status=400)
        return web.json_response({"events": [], "responses": [{"text": body["next_action"]}]})

    async def serve(port: int = 0) -> tuple[web.AppRunner, int]:
        app = web.Application()
        app.router.add_post("/webhook", webhook)
        app_runner = web.AppRunner(app)
        await app_runner.setup()
        site = web.TCPSite(app_runner, "127.0.0.1", port)
        await site.start()
        return app_runner, site._server.sockets[0].getsockname()[1]

    server, port = await serve()
    endpoint = EndpointConfig(f"http://127.0.0.1:{port}/webhook", headers={"Authorization": "Bearer s3cret"})

    async def call(name: str, **extra: Any) -> Any:
        return await endpoint.request(json={"next_action": name, **extra}, method="post", timeout=10)

    seen: dict[str, Any] = {}
    seen["stock_answers"] = [await call("one"), await call("two")]
    seen["stock_connections"] = len(set(ports))
    ports.clear()
    rasa_action_http.KEEPALIVE_SECONDS = 0.5
    rasa_action_http.install()
    seen["answers"] = [await call("one"), await call("two"), await call("three")]
    seen["connections"] = len(set(ports))
    seen["headers"] = sorted(set(headers))
    try:
        await call("x", reject=True)
        seen["rejection"] = "no error"
    except ClientResponseError as e:
        seen["rejection"] = [e.status, json.loads(e.text)]
    ports.clear()
    answers = await asyncio.gather(*(call(f"c{i}") for i in range(20)))
    seen["concurrent"] = [a["responses"][0]["text"] for a in answers] == [f"c{i}" for i in range(20)]
    seen["concurrent_connections"] = len(set(ports))
    await call("before idle")
    before = ports[-1]
    await asyncio.sleep(1.2)               # > KEEPALIVE_SECONDS: the pool lets the connection go
    ports.clear()
    await call("after idle")
    await call("again")
    seen["after_idle"] = [port == before for port in ports]
    await server.cleanup()                     # the action server restarts on the same port
    server, _ = await serve(port)
    seen["after_restart"] = await call("restarted")
    seen["copies_without_sessions"] = [not c.__dict__.get(rasa_action_http.SESSIONS)
                                       for c in (copy.deepcopy(endpoint), endpoint.copy())]
    seen["closed"] = await rasa_action_http.close_sessions()
    seen["after_close"] = await call("reopened")
    await rasa_action_http.close_sessions()
    await server.cleanup()
    return seen


def body_scenarios() -> dict[str, Any]:
    """encode_body against json.dumps: Rasa's action call bodies, the same and another domain,
    bodies without a domain or with the domain not last."""
    from rasa.shared.core.domain import Domain

    domain = Domain.load("bot/domain").as_dict()
    other = Domain.from_dict({"intents": ["greet"], "actions": ["action_x"]}).as_dict()
    tracker = {"sender_id": "c1", "slots": {"area": "江宁区", "n": 1.5}, "events": [{"event": "action"}]}
    bodies = [{"next_action": "action_a", "sender_id": "c1", "tracker": tracker, "version": "3.6.21",
               "domain": domain},
              {"next_action": "action_b", "sender_id": "c2", "tracker": {}, "version": "3.6.21", "domain": domain},
              {"next_action": "action_c", "sender_id": "c3", "tracker": tracker, "version": "3.6.21",
               "domain": other},
              {"next_action": "action_d", "sender_id": "c4", "tracker": tracker, "version": "3.6.21"},
              {"domain": domain},
              {"domain": domain, "next_action": "action_e"},
              [1, "two"], "text"]
    same = [rasa_action_http.encode_body(b) == json.dumps(b) for b in bodies]
    return {"bodies_as_json_dumps": same}


def tfcall_scenarios() -> dict[str, Any]:
    import numpy as np
    import tensorflow as tf

    from bot.rasa_tf_call import DirectCall

    specs = [tf.TensorSpec([None, 5], tf.float32), tf.TensorSpec([None], tf.int64),
             tf.TensorSpec([None, None, 3], tf.float32)]
    weights = tf.Variable(tf.reshape(tf.range(20, dtype=tf.float32), [5, 4]))

    def step(batch: Any) -> dict:
        a, b, c = batch
        return {"x": tf.matmul(a, weights), "y": tf.reduce_sum(c, axis=[1, 2]) + tf.cast(b, tf.float32),
                "z": {"shape": tf.shape(c)}}

    function = tf.function(step, input_signature=[specs])
    rng = np.random.default_rng(7)

    def batch(n: int, dtype: Any = np.float32, width: int = 5) -> tuple:
        return (rng.random((n, width)).astype(dtype), rng.integers(0, 9, n),
                rng.random((n, n + 1, 3)).astype(np.float32))

    function(batch(1))
    direct = DirectCall(function)

    def same(a: Any, b: Any) -> bool:
        flat_a, flat_b = tf.nest.flatten(a), tf.nest.flatten(b)
        return (tf.nest.map_structure(lambda _: 0, a) == tf.nest.map_structure(lambda _: 0, b)
                and all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(flat_a, flat_b)))

    class Features(np.ndarray):
        """Like Rasa's FeatureArray: a subclass of numpy's array."""

    batches = [batch(n) for n in (1, 2, 5, 3)]
    batches.append(tuple(np.asarray(x).view(Features) for x in batch(4)))
    seen: dict[str, Any] = {"tfcall_same": [same(function(b), direct(b)) for b in batches],
                            "tfcall_one_graph": direct.concrete is function.get_concrete_function(),
                            "tfcall_direct": direct.direct_calls}

    def outcome(call: Any, value: Any) -> str:
        try:
            call(value)
        except Exception as e:  # noqa: BLE001 - the observation is the error's type
            return type(e).__name__
        return "ok"

    odd = [batch(2, width=6), batch(2)[:2], [tf.constant(x) for x in batch(2)], batch(2, dtype=np.float64)]
    seen["tfcall_odd_inputs"] = [[outcome(function, b), outcome(direct, b)] for b in odd]
    return seen


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        seen = graph_scenarios(Path(tmp))
    seen.update(body_scenarios())
    seen.update(tfcall_scenarios())
    seen.update(asyncio.run(http_scenarios()))
    print(json.dumps(seen, ensure_ascii=False, default=str))
    sys.stdout.flush()


if __name__ == "__main__":
    main()

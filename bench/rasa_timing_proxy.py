"""A recording reverse proxy in front of Rasa, for the web chat benchmark.

Forwards every request to the Rasa server unchanged and, for each REST webhook call, records how
long Rasa took (from sending the request upstream to having read the whole answer) under the
message's sender id. The benchmark sends both of its paths (straight to Rasa, and through a
gateway pointed at this proxy) through it, so it can split every message's latency into Rasa's
time and the time spent outside Rasa, which is where the gateway's cost shows. Rasa's own
run-to-run variance, many times the gateway's cost, then drops out of the comparison.

    python -m bench.rasa_timing_proxy --port 5099 --upstream http://127.0.0.1:5005

``GET /_timings`` answers ``{sender: [milliseconds, ...]}`` in the order the calls were made.
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict

import aiohttp
from aiohttp import web

WEBHOOK_PATH = "/webhooks/rest/webhook"
UPSTREAM_KEY = web.AppKey("upstream", str)
SESSION_KEY = web.AppKey("session", aiohttp.ClientSession)
TIMINGS_KEY = web.AppKey("timings", dict)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


async def forward(request: web.Request) -> web.Response:
    """Send ``request`` to Rasa as it is; record Rasa's time for REST webhook calls."""
    body = await request.read()
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    url = request.app[UPSTREAM_KEY] + request.path_qs
    started = time.perf_counter()
    async with request.app[SESSION_KEY].request(request.method, url, data=body,
                                                headers=headers) as upstream:
        answer = await upstream.read()
        elapsed_ms = 1000 * (time.perf_counter() - started)
        status, content_type = upstream.status, upstream.content_type
    if request.path == WEBHOOK_PATH and request.method == "POST":
        try:
            sender = str((await request.json()).get("sender"))
        except ValueError:
            sender = "?"
        request.app[TIMINGS_KEY][sender].append(elapsed_ms)
    return web.Response(body=answer, status=status, content_type=content_type)


async def timings(request: web.Request) -> web.Response:
    return web.json_response(request.app[TIMINGS_KEY])


async def _client_session(app: web.Application):
    # Enough pooled connections for every concurrent conversation, as the gateway's own pool.
    app[SESSION_KEY] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=500),
                                             timeout=aiohttp.ClientTimeout(total=300))
    yield
    await app[SESSION_KEY].close()


def create_app(upstream: str) -> web.Application:
    """The proxy app forwarding to ``upstream`` (Rasa's base URL)."""
    app = web.Application(client_max_size=10 * 1024 * 1024)
    app[UPSTREAM_KEY] = upstream.rstrip("/")
    app[TIMINGS_KEY] = defaultdict(list)
    app.cleanup_ctx.append(_client_session)
    app.router.add_get("/_timings", timings)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="Rasa's base URL")
    args = parser.parse_args()
    web.run_app(create_app(args.upstream), host="127.0.0.1", port=args.port, print=None,
                access_log=None)


if __name__ == "__main__":
    main()

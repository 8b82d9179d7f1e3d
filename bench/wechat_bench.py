"""Benchmark of the WeChat channel.

Starts embedded Redis and the gateway (as a separate process, like production) with the WeChat
channel pointed at the loopback fake of the WeChat API, then has N users (default 200) talk at
once through signed, AES-encrypted pushes.  Prints:

- webhook acknowledgement latency p50/p95/p99 (target p99 < 50 ms);
- time from inbound push to the customer-service send arriving at the (fake) WeChat API;
- direct Rasa latency for the same messages, for comparison.

Rasa: ``--rasa-url`` uses a real Rasa server (e.g. from ``make run``); without it, a loopback
fake of Rasa's REST contract answering after ``--rasa-delay-ms`` stands in (labelled as such).

    PYTHONPATH=. .venv/app/bin/python bench/wechat_bench.py --users 200 --messages 5
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.stack import Stack, free_port  # noqa: E402
from fakes.wechat_api import FakeWeChatApi, WeChatPusher  # noqa: E402

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def cpu_seconds(pids: list[int]) -> float:
    """User+system CPU time consumed so far by ``pids`` (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) in milliseconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered))) - 1))] * 1000


def line(name: str, values: list[float]) -> str:
    return (f"{name:<44} n={len(values):<5} p50={pct(values, 50):8.1f} ms  p95={pct(values, 95):8.1f} ms  "
            f"p99={pct(values, 99):8.1f} ms  max={max(values) * 1000 if values else float('nan'):8.1f} ms")


async def _root(_request: web.Request) -> web.Response:
    return web.Response(text="FAKE of the Rasa REST contract")


async def fake_rasa(delay_ms: float) -> TestServer:
    """A FAKE of Rasa's REST webhook contract (echo after a fixed delay), not Rasa."""
    async def webhook(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(delay_ms / 1000)
        return web.json_response([{"recipient_id": body["sender"], "text": f"收到：{body['message']}"}])

    app = web.Application()
    app.router.add_post("/webhooks/rest/webhook", webhook)
    app.router.add_get("/", _root)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def serve_fakes(args: argparse.Namespace) -> None:
    """Child-process mode: serve the WeChat API fake and the Rasa contract fake, print their URLs
    and the app credentials on one line, and run until stdin closes."""
    wechat = FakeWeChatApi(app_id="wx" + secrets.token_hex(8))
    api_url = await wechat.start()
    rasa_server = await fake_rasa(args.rasa_delay_ms)
    print(api_url, str(rasa_server.make_url("")).rstrip("/"), wechat.app_id, wechat.app_secret, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await rasa_server.close()
    await wechat.close()


async def run(args: argparse.Namespace) -> None:
    # The fakes run in their own process so that the load generator measures the gateway, not
    # a loop it shares with the servers it is waiting for.
    fakes = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).resolve()), "--serve-fakes", "--rasa-delay-ms", str(args.rasa_delay_ms),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    api_url, fake_rasa_url, app_id, app_secret = (await fakes.stdout.readline()).decode().split()
    rasa_url = args.rasa_url or fake_rasa_url
    token = "bench" + secrets.token_hex(4)
    env = {"WECHAT_TOKEN": token, "WECHAT_APP_ID": app_id, "WECHAT_APP_SECRET": app_secret,
           "WECHAT_AES_KEY": AES_KEY, "WECHAT_ENCRYPT_MODE": args.mode, "WECHAT_API_BASE_URL": api_url}
    run_dir = Path(tempfile.mkdtemp(prefix="wechat-bench-"))
    stack = Stack(run_dir=run_dir, log_dir=run_dir / "logs")  # access logs to files, not the terminal
    try:
        redis_url = await asyncio.to_thread(stack.start_embedded_redis, free_port())
        gateways = []
        front_env = dict(env, WECHAT_WORKERS="0") if args.answering_instances else env
        for _ in range(args.instances):
            gateways.append(await asyncio.to_thread(
                stack.start_gateway, "127.0.0.1", free_port(), redis_url, rasa_url, front_env))
        for _ in range(args.answering_instances):  # not given pushes: they only answer
            await asyncio.to_thread(stack.start_gateway, "127.0.0.1", free_port(), redis_url, rasa_url, env)
        pushers = [WeChatPusher(url, token, app_id, AES_KEY, args.mode) for url in gateways]
        users = ["o" + secrets.token_hex(13) for _ in range(args.users)]
        posted: dict[tuple[str, str], float] = {}
        acks: list[float] = []
        failures = 0
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def state() -> dict:
                async with session.get(f"{api_url}/_fake/state") as resp:
                    return await resp.json()

            # Warm-up: token fetch, and connection pools (HTTP and Redis) grown to burst size, as
            # they are in a gateway that has been running for a while.
            await asyncio.gather(*(pushers[i % len(pushers)].post(session, pushers[0].text_fields(
                f"owarmup{i:05d}", "预热")) for i in range(args.users)))
            await asyncio.sleep(3.0)

            async def talk(i: int, user: str) -> None:
                nonlocal failures
                if not args.lockstep:  # real users are not synchronised: spread the first message
                    await asyncio.sleep(random.uniform(0, args.think_ms / 1000))
                for n in range(args.messages):
                    pusher = pushers[(i + n) % len(pushers)]
                    content = f"第{n}条 查询电费"
                    query, body = pusher.build(pusher.text_fields(user, content))
                    wall = time.time()
                    started = time.perf_counter()
                    status, text = await pusher.post_raw(session, query, body)
                    acks.append(time.perf_counter() - started)
                    posted[(user, f"收到：{content}")] = wall
                    if (status, text) != (200, "success"):
                        failures += 1
                    think = args.think_ms / 1000
                    await asyncio.sleep(think if args.lockstep else random.uniform(0.5 * think, 1.5 * think))

            gateway_pids = [p.popen.pid for p in stack.processes if p.name == "gateway"]  # all of them
            front_pids = gateway_pids[:args.instances]
            cpu_before = cpu_seconds(gateway_pids)
            front_before = cpu_seconds(front_pids)
            client_before = time.process_time()
            began = time.perf_counter()
            await asyncio.gather(*(talk(i, u) for i, u in enumerate(users)))
            push_seconds = time.perf_counter() - began
            front_cpu = cpu_seconds(front_pids) - front_before
            client_cpu = time.process_time() - client_before
            expected = args.users * args.messages
            wanted = set(users)
            deadline = time.monotonic() + 120
            while True:
                current = await state()
                done = [s for s in current["sent"] if s[0] in wanted]
                if len(done) >= expected or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            gateway_cpu = cpu_seconds(gateway_pids) - cpu_before
            end_to_end = [at - posted[(openid, content)] for openid, content, at in done
                          if (openid, content) in posted]
            delivered = len(end_to_end)

            direct: list[float] = []

            async def direct_rasa(user: str) -> None:
                for n in range(args.messages):
                    started = time.perf_counter()
                    async with session.post(f"{rasa_url}/webhooks/rest/webhook",
                                            json={"sender": f"bench:{user}", "message": f"第{n}条 查询电费"}) as r:
                        await r.read()
                    direct.append(time.perf_counter() - started)
                    await asyncio.sleep(args.think_ms / 1000)

            await asyncio.gather(*(direct_rasa(u) for u in users))

        rasa_label = ("real server at " + args.rasa_url if args.rasa_url
                      else f"FAKE of the REST contract answering after {args.rasa_delay_ms:.0f} ms")
        layout = (f"{args.instances} acknowledging + {args.answering_instances} answering gateway processes"
                  if args.answering_instances else f"{args.instances} gateway process(es) doing both")
        pacing = "lockstep bursts" if args.lockstep else "jittered"
        print(f"WeChat channel benchmark: {args.users} concurrent users x {args.messages} messages "
              f"(think {args.think_ms:.0f} ms, {pacing}), {layout}, {args.mode} mode")
        print(f"Rasa: {rasa_label}")
        print(line("webhook acknowledgement", acks) + "   (target p99 < 50 ms)")
        print(line("inbound push -> customer-service send", end_to_end))
        print(line("direct Rasa REST call (same users/pacing)", direct))
        print(f"pushes: {len(acks)} in {push_seconds:.2f}s ({len(acks) / push_seconds:.0f}/s); "
              f"non-success acks: {failures}; replies delivered: {delivered}/{expected}; "
              f"token fetches: {current['token_requests']}")
        print(f"gateway CPU per message (ack + Rasa call + send, all instances): "
              f"{gateway_cpu / max(delivered, 1) * 1000:.2f} ms; machine load average: "
              f"{Path('/proc/loadavg').read_text().split()[0]} on {os.cpu_count()} CPUs")
        print(f"during the pushes: acknowledging processes used {front_cpu:.2f}s CPU "
              f"({front_cpu / max(len(acks), 1) * 1000:.2f} ms per push"
              f"{', answering included' if not args.answering_instances else ''}), "
              f"the load generator {client_cpu:.2f}s, over {push_seconds:.2f}s of wall time")
    finally:
        await asyncio.to_thread(stack.stop)
        fakes.stdin.close()
        try:
            await asyncio.wait_for(fakes.wait(), 10)
        except asyncio.TimeoutError:
            fakes.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--messages", type=int, default=5, help="messages per user")
    parser.add_argument("--instances", type=int, default=2, help="gateway processes sharing Redis")
    parser.add_argument("--answering-instances", type=int, default=0,
                        help="extra gateway processes that answer while the --instances ones only "
                             "acknowledge and queue (WECHAT_WORKERS=0); 0 = every instance does both")
    parser.add_argument("--mode", choices=("plain", "compatible", "safe"), default="safe")
    parser.add_argument("--think-ms", type=float, default=1000,
                        help="mean pause between one user's messages (jittered ±50%%)")
    parser.add_argument("--lockstep", action="store_true",
                        help="worst case: all users send at the same instant, every round")
    parser.add_argument("--rasa-url", default="", help="a real Rasa server (default: loopback fake)")
    parser.add_argument("--rasa-delay-ms", type=float, default=150, help="fake Rasa's answer delay")
    parser.add_argument("--serve-fakes", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    asyncio.run(serve_fakes(args) if args.serve_fakes else run(args))


if __name__ == "__main__":
    main()

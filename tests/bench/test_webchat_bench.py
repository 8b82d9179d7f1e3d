"""The web chat benchmark's arithmetic and its timing proxy (real HTTP on loopback)."""
from __future__ import annotations

import aiohttp
from aiohttp.test_utils import TestServer

from bench.rasa_timing_proxy import create_app
from bench.webchat_bench import Load, Run, outside_rasa_ms, percentile
from fakes.rasa_rest import FakeRasaRest


def test_percentile_is_nearest_rank_and_nan_when_empty():
    values = [float(v) for v in range(1, 101)]  # 1 .. 100
    assert percentile(values, 0.5) == 51.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0
    assert percentile([], 0.5) != percentile([], 0.5)  # NaN


def test_outside_rasa_pairs_each_message_with_rasas_time_in_order():
    run = Run("x", samples=[("a", 0.100), ("b", 0.050), ("a", 0.200), ("b", 0.070)])
    outside, unpaired = outside_rasa_ms(run, {"a": [95.0, 180.0], "b": [49.0, 60.0]})
    assert sorted(round(v, 6) for v in outside) == [1.0, 5.0, 10.0, 20.0]
    assert unpaired == 0


def test_outside_rasa_leaves_out_conversations_that_cannot_be_paired():
    run = Run("x", samples=[("a", 0.100), ("a", 0.200), ("b", 0.050)])
    # "a" lost a message on the way (one Rasa timing for two samples); "b" never reached the proxy.
    outside, unpaired = outside_rasa_ms(run, {"a": [95.0]})
    assert outside == []
    assert unpaired == 3


async def test_timing_proxy_forwards_unchanged_and_records_rasas_time_per_sender():
    rasa = FakeRasaRest()
    upstream = await rasa.start()
    proxy = TestServer(create_app(upstream), host="127.0.0.1")
    await proxy.start_server()
    base = str(proxy.make_url("")).rstrip("/")
    try:
        async with aiohttp.ClientSession() as http:
            for text in ("你好", "慢0.2", "按钮"):
                async with http.post(f"{base}/webhooks/rest/webhook",
                                     json={"sender": "web:abc", "message": text}) as response:
                    assert response.status == 200
                    answer = await response.json()
            assert answer[0]["buttons"]  # the fake's scripted answer came through unchanged
            async with http.get(f"{base}/") as response:
                assert "Hello from Rasa" in await response.text()
            async with http.get(f"{base}/_timings") as response:
                timings = await response.json()
    finally:
        await proxy.close()
        await rasa.close()
    assert list(timings) == ["web:abc"]
    fast, slow, _ = timings["web:abc"]
    assert slow >= 200.0 > fast
    assert rasa.received["web:abc"] == ["你好", "慢0.2", "按钮"]


def test_load_spreads_the_conversations_starts_evenly_over_the_ramp_up():
    load = Load(conversations=4, script=["你好"], rounds=1, ramp_up=2.0)
    assert [load.start_delay(i) for i in range(4)] == [0.0, 0.5, 1.0, 1.5]
    assert Load(conversations=3, script=["你好"], rounds=1, ramp_up=0.0).start_delay(2) == 0.0

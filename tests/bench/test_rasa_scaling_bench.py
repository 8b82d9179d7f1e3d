"""The Rasa scaling benchmark's pure parts (node counts, affinity, balanced ids, efficiency, table)
and its measurement against two fakes of Rasa's REST contract and a real gateway on loopback."""
from __future__ import annotations

import argparse
import math
import os
from collections import Counter

import pytest
from aiohttp.test_utils import TestServer

from bench.rasa_scaling_bench import (Result, balanced_ids, conversations_per_node, efficiency,
                                      figures, measure_nodes, metric_total, new_id, node_of, parse_nodes,
                                      table)
from bench.webchat_bench import Load, Run
from channels.rasa_nodes import RasaPool
from fakes.rasa_rest import FakeRasaRest

URLS = ["http://127.0.0.1:5005", "http://127.0.0.1:5006", "http://127.0.0.1:5007"]


def test_node_counts_are_sorted_without_repeats_and_bounded():
    assert parse_nodes("3,1,2,1") == [1, 2, 3]
    assert parse_nodes(" 2 ") == [2]
    for bad in ("0,1", "1,9", "", "one", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_nodes(bad)


def test_direct_path_picks_the_node_the_gateways_pool_picks():
    pool = RasaPool(URLS, timeout_seconds=1)
    for i in range(200):
        conversation = f"web:{i:032x}"
        assert node_of(URLS, conversation) == pool.ranked(conversation)[0].url


def test_balanced_ids_give_every_node_the_same_number_interleaved():
    ids = balanced_ids(URLS, 4, new_id, prefix="web:")
    assert len(ids) == len(set(ids)) == 12
    nodes = [node_of(URLS, "web:" + i) for i in ids]
    assert Counter(nodes) == {url: 4 for url in URLS}
    assert nodes[:3] == URLS and nodes[3:6] == URLS  # node by node, so starts reach all alike
    assert [node_of(URLS[:1], i) for i in balanced_ids(URLS[:1], 2, new_id)] == URLS[:1] * 2


def test_efficiency_is_throughput_per_node_relative_to_one_node():
    eff = efficiency({1: 10.0, 2: 18.0, 3: 21.0})
    assert eff[1] == 1.0
    assert eff[2] == pytest.approx(0.9)
    assert eff[3] == pytest.approx(0.7)
    assert math.isnan(efficiency({2: 18.0})[2])


def test_table_and_json_show_every_node_count_and_path():
    def run(label: str, messages: int, seconds: float) -> Run:
        return Run(label, samples=[(f"web:{i % 4}", 0.1 + i / 1000) for i in range(messages)],
                   seconds=seconds, cpu_seconds={"rasa": 0.5 * seconds, "rasa2": 0.5 * seconds, "gateway": 0.1})

    results = [Result(n, URLS[:n], run("Rasa REST directly", 100 * n, 10.0), run("through the gateway", 90 * n, 10.0),
                      (1.0, 1.0, 1.0), (2.0, 1.5, 1.0), {"rasa": 1400.0}, busy_replies=n - 1) for n in (1, 2)]
    lines = table(results, per_node=8)
    assert len(lines) == 5
    assert "efficiency" in lines[0]
    row = lines[3].split()  # 2 nodes, direct: 16 conversations, 20 msg/s, 100 %
    assert row[:6] == ["2", "Rasa", "REST", "directly", "16", "20.0"]
    assert "100%" in lines[3]
    assert lines[4].split()[9] == "1"  # 2 nodes through the gateway: one busy reply
    args = argparse.Namespace(conversations=8, messages=8, rounds=3, ramp_up=1.0)
    data = figures(results, args, {"model": "m"})
    gateway_two = next(r for r in data["rows"] if r["nodes"] == 2 and r["path"] == "gateway")
    assert gateway_two["messages_per_s"] == 18.0 and gateway_two["efficiency"] == 1.0
    assert gateway_two["busy_replies"] == 1
    assert gateway_two["rasa_cpu_ms_per_message"] == pytest.approx(1000 * 10 / 180, abs=0.1)
    assert gateway_two["cores_busy"] == pytest.approx(1.01)
    assert gateway_two["messages_per_cpu_second"] == pytest.approx(180 / 10.1, abs=0.01)


def test_metric_total_sums_every_label_of_one_counter_only():
    page = """# HELP powerdesk_gateway_busy_replies_total Busy replies
# TYPE powerdesk_gateway_busy_replies_total counter
powerdesk_gateway_busy_replies_total{channel="web",reason="timeout"} 2.0
powerdesk_gateway_busy_replies_total{channel="wechat",reason="connection"} 1.0
powerdesk_gateway_busy_replies_created{channel="web",reason="timeout"} 1.7e+09
powerdesk_gateway_busy_replies_totally 5.0
"""
    assert metric_total(page, "powerdesk_gateway_busy_replies_total") == 3.0
    assert metric_total(page, "powerdesk_gateway_errors_total") == 0.0


@pytest.fixture
async def two_nodes():
    fakes = [FakeRasaRest(), FakeRasaRest()]
    urls = [await fake.start() for fake in fakes]
    yield fakes, [url.rstrip("/") for url in urls]
    for fake in fakes:
        await fake.close()


async def test_both_paths_send_each_conversation_to_its_node_evenly(two_nodes, redis_url, monkeypatch):
    from channels.app import create_app
    from channels.config import GatewayConfig

    fakes, urls = two_nodes
    for key in [k for k in os.environ if k.startswith(("WECHAT_", "SMS_", "GATEWAY_", "RASA_", "WEBCHAT_"))]:
        monkeypatch.delenv(key)
    config = GatewayConfig.from_env({"REDIS_URL": redis_url, "RASA_URL": ",".join(urls)})
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    try:
        load = Load(conversations=4, script=["你好", "按钮"], rounds=1, ramp_up=0.0)
        direct, gateway = await measure_nodes(urls, str(server.make_url("")).rstrip("/"), load)
    finally:
        await server.close()
    for run in (direct, gateway):
        assert run.errors == 0
        assert len(run.samples) == 4 * 2  # the measured round only: the warm-up is dropped
        assert conversations_per_node(run, urls) == [2, 2]
    for fake, url in zip(fakes, urls):
        assert fake.received  # warm-up and measured round, both paths
        for sender, texts in fake.received.items():
            assert node_of(urls, sender) == url
            assert texts == ["你好", "按钮"]
        assert sum(s.startswith("web:") for s in fake.received) == 4  # 2 per round
        assert sum(s.startswith("bench:") for s in fake.received) == 4
    with pytest.raises(ValueError):
        await measure_nodes(urls, "http://127.0.0.1:1", Load(3, ["你好"], 1, 0.0))

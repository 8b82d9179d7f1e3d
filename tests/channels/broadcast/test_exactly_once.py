"""Exactly once, nothing lost: an outage campaign run by the operators' CLI in separate
processes, counted at the providers' loopback fakes.

Each test seeds N customers (:data:`bench.broadcast_data.TEST_MIX`: WeChat, SMS, both, web chat,
no conversation, opted out) in the area of one ongoing fault outage — accounts in a fresh
reference-backends database, conversations in a fresh Redis — and runs ``python -m
channels.broadcast run outage --outage-id GZ90001`` as worker processes
(:class:`bench.broadcast_harness.Harness`). Every reachable customer must have received exactly
one message (WeChat template or customer-service message, SMS, or web chat outbox entry) and
every other none, and the campaign's report must account for every customer as sent or skipped
with the right reason, in three situations: a re-run, two workers at once, and a worker killed
with SIGKILL mid-run followed by a resume.

Time: a fault outage notice is urgent (quiet hours do not apply) and the outage's times are
relative to now in the reference backends; quiet hours are switched off anyway, so the tests
mean the same at any hour.
"""
from __future__ import annotations

import asyncio

import pytest

from bench.broadcast_data import OUTAGE, TEST_MIX, Customer, customers, report_adds_up, tally
from bench.broadcast_harness import Harness, Worker

N = 2000
CAMPAIGN = f"outage:{OUTAGE.outage_id}:fault"
RUN_TIMEOUT = 240.0
# A resume after a SIGKILL may leave recipients held for a retry (the dead worker's per-conversation
# delivery locks and SMS leases must run out first); it runs again when they are due, as the
# scheduler would, within this many seconds.
RESUME_TIMEOUT = 300.0
AUDIENCE: list[Customer] = list(customers(N, TEST_MIX))
REACHABLE = sum(1 for c in AUDIENCE if c.reachable)


@pytest.fixture
async def harness(tmp_path):
    # A worker that stopped answering loses its recipients to another after 2 s (default 60).
    async with Harness(tmp_path / "run", extra_env={"BROADCAST_CLAIM_IDLE_SECONDS": "2"}) as h:
        await h.prepare(AUDIENCE, fresh_fakes=False)  # the fakes have just started
        yield h


async def finish(*workers: Worker) -> None:
    """Every worker ends by itself, successfully."""
    codes = await asyncio.gather(*(w.wait(RUN_TIMEOUT) for w in workers))
    for worker, code in zip(workers, codes):
        assert code == 0, f"{worker.name} exited {code}:\n{worker.log_tail()}"


async def assert_exactly_once(harness: Harness) -> dict:
    """Exactly one message per reachable customer at the fakes, none to the others, and a report
    that adds up; returns the report. SMS still waiting in the outbox (a killed worker's, for the
    gateway to send once its lease runs out) are waited for first."""
    assert await harness.drain_sms_outbox(RESUME_TIMEOUT) == 0, "SMS still waiting in the outbox"
    await harness.settle(quiet_seconds=0.5)
    result = tally(AUDIENCE, await harness.counts(AUDIENCE))
    assert result.exactly_once, f"{result.summary()}; examples {result.examples}"
    assert result.expected == REACHABLE and result.received == REACHABLE
    report = await harness.report(CAMPAIGN)
    assert report_adds_up(report, AUDIENCE) == [], report
    return report


async def test_every_customer_is_sent_once_or_skipped_with_a_reason(harness):
    await finish(harness.start_worker())

    report = await assert_exactly_once(harness)
    assert report["totals"]["failed"] == 0, report["first_failures"]
    assert report["totals"]["sent"] == REACHABLE
    by_channel = {ch: c["sent"] for ch, c in report["channels"].items() if c["sent"]}
    counts = await harness.counts(AUDIENCE)
    assert by_channel == {"wechat": sum(counts["wechat"].values()),
                          "sms": sum(counts["aliyun"].values()),
                          "web": sum(counts["web"].values())}


async def test_a_rerun_sends_nothing_new(harness):
    await finish(harness.start_worker())
    first = await assert_exactly_once(harness)
    accepted, requests = await harness.totals(), await harness.requests()

    await finish(harness.start_worker(name="rerun"))

    assert await harness.settle(quiet_seconds=0.5) == accepted
    assert await harness.requests() == requests, "the re-run called a provider again"
    again = await assert_exactly_once(harness)
    assert again["totals"] == first["totals"]


async def test_two_workers_running_the_campaign_at_once(harness):
    await finish(harness.start_worker(name="worker-a"), harness.start_worker(name="worker-b"))

    await assert_exactly_once(harness)


async def test_a_worker_killed_mid_run_then_resumed(harness):
    await harness.start_gateway()  # its SMS outbox worker sends what the killed worker left
    first = harness.start_worker(name="killed")
    reached = await harness.wait_totals(REACHABLE // 4, RUN_TIMEOUT, first, interval=0.01)
    first.kill()
    await first.wait(30)
    killed_at = await harness.totals()
    assert reached < REACHABLE and 0 < killed_at < REACHABLE, \
        f"the worker was not killed mid-run ({killed_at} of {REACHABLE} sent):\n{first.log_tail()}"
    assert (await harness.report(CAMPAIGN))["open"] > 0

    await harness.run_until_done(CAMPAIGN, "resumed", RESUME_TIMEOUT)

    await assert_exactly_once(harness)


async def test_two_workers_one_killed_the_other_finishes(harness):
    """The survivor takes over what the killed worker held (XAUTOCLAIM) without a second run."""
    await harness.start_gateway()
    doomed, survivor = harness.start_worker(name="doomed"), harness.start_worker(name="survivor")
    reached = await harness.wait_totals(REACHABLE // 4, RUN_TIMEOUT, doomed, interval=0.01)
    doomed.kill()
    await doomed.wait(30)
    assert REACHABLE // 4 <= reached < REACHABLE, f"not killed mid-run:\n{doomed.log_tail()}"

    await finish(survivor)
    if (await harness.report(CAMPAIGN))["open"]:  # held for a retry: the scheduler's job
        await harness.run_until_done(CAMPAIGN, "scheduled", RESUME_TIMEOUT)

    await assert_exactly_once(harness)

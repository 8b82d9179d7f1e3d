"""``python -m channels.broadcast``: run (with the report), dry run, status, report --json, list,
and clear refusals of bad arguments. The CLI runs in a thread of its own (its own event loop, as
in its own process) while the loopback fakes answer on the test's loop."""
from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from channels.broadcast.__main__ import main
from channels.broadcast.campaigns import Campaigns, encode_member, key
from channels.optout import OptOutStore
from tests.channels.broadcast.engine_support import (Plan, Recipient, Source, sms_counts,
                                                     wechat_audience, wechat_counts)

ROOT = Path(__file__).resolve().parents[3]


def factory(source: Source):
    @contextlib.asynccontextmanager
    async def sources(_redis):
        yield source

    return sources


async def cli(capsys, *argv: str, source: Source | None = None) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv), sources=factory(source or Source([])))
    out, err = capsys.readouterr()
    return code, out, err


async def test_run_sends_and_prints_the_report_then_status_report_and_list(fakes, redis, capsys,
                                                                          gateway_env):
    wechat, sms = fakes
    wechat.refuse_user("o00000003", 43004)
    wechat.fail_next("/cgi-bin/message/template/send", 40003)  # the first send: permanent
    audience = wechat_audience(8) + [Recipient("3300000000", ())]
    source = Source(audience, [Plan()])
    code, out, _err = await cli(capsys, "run", "outage", source=source)
    assert code == 0
    assert sum(wechat_counts(wechat).values()) == 6 and sum(sms_counts(sms).values()) == 2
    assert "campaign outage:O-1:notice  幸福小区计划停电通知" in out
    assert "of which WeChat→SMS fallback: 2" in out
    assert "skipped: no_channel 1" in out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()
             if line.strip().split(" ")[0] in ("wechat", "sms", "total")}
    assert lines["wechat"][:1] == ["6"] and lines["sms"][:1] == ["2"]
    assert lines["total"] == ["8", "0", "0", "0", "1"]

    code, out, _ = await cli(capsys, "status", "outage:O-1:notice")
    assert code == 0 and out.startswith("outage:O-1:notice: done, 9/9 finished")
    code, out, _ = await cli(capsys, "report", "outage:O-1:notice", "--json")
    report = json.loads(out)
    assert code == 0 and report["audience"] == 9 and report["channels"]["sms"]["fallback"] == 2
    code, out, _ = await cli(capsys, "list")
    assert code == 0 and out.split()[:3] == ["outage:O-1:notice", "done", "9/9"]

    code, out, _ = await cli(capsys, "run", "outage", "--outage-id", "O-1", source=source)
    assert code == 0 and sum(wechat_counts(wechat).values()) == 6  # a re-run sends nothing


async def test_dry_run_prints_counts_and_sends_nothing(fakes, redis, capsys, gateway_env):
    wechat, _sms = fakes
    await OptOutStore(redis).opt_out("wechat:o00000001")
    source = Source(wechat_audience(4) + [Recipient("3300000000", ()),
                                          Recipient("3300000001", ("web:" + "w" * 22,))])
    code, out, _ = await cli(capsys, "run", "outage", "--dry-run", source=source)
    assert code == 0
    assert out.splitlines()[1:] == [
        "  audience 6", "  would send by web: 1", "  would send by wechat: 3",
        "  skipped: opted_out 1, quiet_hours 0, no_channel 1, rate_limited 0, already_notified 0"]
    assert wechat_counts(wechat) == {}
    assert await redis.keys("pd:bc:*") == []


async def test_unknown_campaign_and_nothing_due(fakes, redis, capsys, gateway_env):
    code, _out, err = await cli(capsys, "report", "outage:nope:notice")
    assert code == 3 and "no campaign 'outage:nope:notice'" in err
    code, out, _ = await cli(capsys, "run", "arrears")
    assert code == 0 and out.strip() == "no arrears campaign is due now"


@pytest.mark.parametrize("argv, message", [
    (["run", "sale"], "invalid choice: 'sale'"),
    (["run", "arrears", "--outage-id", "O-1"], "--outage-id goes with the kinds outage and restoration"),
    (["run", "outage", "--due-within", "3"], "--due-within goes with the kind due_reminder"),
    (["run", "due_reminder", "--due-within", "soon"], "DAYS must be a whole number from 0 to 60"),
    (["run", "outage", "--outage-id", "O-1", "--due-within", "3"], "not allowed with argument"),
    (["status"], "the following arguments are required: CAMPAIGN_ID"),
    (["run", "outage", "--workers", "0"], "N must be a whole number from 1 to 32"),
    ([], "the following arguments are required: COMMAND"),
])
def test_bad_arguments_exit_2_with_one_clear_message(argv, message):
    done = subprocess.run([sys.executable, "-m", "channels.broadcast", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_a_bad_setting_exits_2(monkeypatch):
    monkeypatch.setenv("BROADCAST_RATES", "wechat=fast")
    done = subprocess.run([sys.executable, "-m", "channels.broadcast", "list"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == ("broadcast configuration error: BROADCAST_RATES must be a rate "
                                   "such as 30/min, 10/h or off, got 'fast'")


async def test_run_with_two_worker_processes_sends_each_notice_once(fakes, redis, capsys,
                                                                   gateway_env, monkeypatch):
    wechat, _sms = fakes
    wechat.latency_seconds = 0.02
    monkeypatch.setenv("BROADCAST_CONCURRENCY", "2")  # slow enough for the helper to join in
    monkeypatch.setenv("BROADCAST_BATCH", "2")
    source = Source(wechat_audience(300))
    code, out, err = await cli(capsys, "run", "outage", "--workers", "2", source=source)
    assert code == 0, err
    counts = wechat_counts(wechat)
    assert len(counts) == 300 and set(counts.values()) == {1}
    consumers = await redis.xinfo_consumers(key("outage:O-1:notice", "queue"), "workers")
    assert len(consumers) == 2  # this process and its `work` helper both read the stream
    assert "audience 300, open 0" in out


async def test_work_resumes_a_campaign(fakes, redis, capsys, gateway_env):
    wechat, _sms = fakes
    source = Source(wechat_audience(5))
    code, _out, err = await cli(capsys, "work", "outage:O-1:notice", source=source)
    assert code == 3 and "no campaign" in err
    engine_campaigns = Campaigns(redis)
    await engine_campaigns.create(Plan())
    await engine_campaigns.add(Plan().campaign_id, [
        (r.customer, encode_member(r.customer, r.conversations, r.phone, r.params), "")
        for r in source.audience])
    await engine_campaigns.planned(Plan().campaign_id)
    code, out, _ = await cli(capsys, "work", "outage:O-1:notice", source=source)
    assert code == 0 and "audience 5, open 0" in out and len(wechat_counts(wechat)) == 5

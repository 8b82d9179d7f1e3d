"""Segments as operators bill them, phone normalisation, opt-out words, quiet hours, config."""
from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from channels.sms.config import RateLimit, SmsConfig, SmsConfigError, parse_limits
from channels.sms.optout import keyword
from channels.sms.phones import normalise_phone
from channels.sms.quiet_hours import QuietHours
from channels.sms.segments import billed_length, segment_count

SH = ZoneInfo("Asia/Shanghai")


def at(y, mo, d, h, mi=0) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=SH).timestamp()


@pytest.mark.parametrize("text_len,expected", [(0, 1), (64, 1), (65, 2), (128, 2), (129, 3),
                                               (195, 3), (196, 4)])
def test_segments_count_the_signature_70_then_67(text_len, expected):
    # 【国网供电】 is 6 characters: 64 + 6 = 70 is one message, 65 + 6 = 71 is two parts of 67.
    assert billed_length("电" * text_len, "国网供电") == text_len + 6
    assert segment_count("电" * text_len, "国网供电") == expected


def test_segments_every_character_counts_one():
    assert segment_count("a" * 70, "") == 1
    assert segment_count("a" * 71, "") == 2
    assert segment_count("电费123，ok！" * 5, "") == 1


@pytest.mark.parametrize("raw,expected", [
    ("13812345678", "13812345678"), ("+86 138-1234-5678", "13812345678"),
    ("8613812345678", "13812345678"), ("008613812345678", "13812345678"),
    ("１３８１２３４５６７８", "13812345678"), ("12812345678", None), ("+1 4155550100", None),
    ("02588888888", None), ("1381234567", None), (None, None), ("", None),
])
def test_normalise_phone(raw, expected):
    assert normalise_phone(raw) == expected


@pytest.mark.parametrize("text", ["退订", "TD", "td", "Td", "tD", "T", "t", "R", "r", "ＴＤ", "ｔｄ",
                                  "Ｔ", "ｒ", " TD ", "TD。", "【退订】", "退 订", "td!", "\u3000Ｒ\u3000"])
def test_opt_out_in_every_spelling(text):
    assert keyword(text) == "opt_out"


@pytest.mark.parametrize("text", ["订阅", "恢复", "恢复订阅", "重新订阅", " 订阅。"])
def test_opt_in_needs_an_explicit_word(text):
    assert keyword(text) == "opt_in"


@pytest.mark.parametrize("text", ["我想退订电费提醒吗", "TDD", "STOP", "1", "电费", "test", "RT", "",
                                  "不要退订", "查询"])
def test_other_messages_are_not_keywords(text):
    assert keyword(text) is None


def test_quiet_hours_default_window_crosses_midnight():
    quiet = QuietHours((time(21), time(8)), "Asia/Shanghai")
    assert not quiet.is_quiet(at(2026, 11, 23, 20, 59))
    assert quiet.is_quiet(at(2026, 11, 23, 21, 0))
    assert quiet.is_quiet(at(2026, 11, 24, 3, 0))
    assert quiet.is_quiet(at(2026, 11, 24, 7, 59))
    assert not quiet.is_quiet(at(2026, 11, 24, 8, 0))
    assert quiet.next_allowed(at(2026, 11, 23, 22, 30)) == at(2026, 11, 24, 8, 0)
    assert quiet.next_allowed(at(2026, 11, 24, 6, 0)) == at(2026, 11, 24, 8, 0)
    assert quiet.next_allowed(at(2026, 11, 24, 12, 0)) == at(2026, 11, 24, 12, 0)


def test_quiet_hours_use_local_time_not_utc():
    quiet = QuietHours((time(21), time(8)), "Asia/Shanghai")
    # 14:00 UTC is 22:00 in Shanghai.
    assert quiet.is_quiet(datetime(2026, 11, 23, 14, 0, tzinfo=ZoneInfo("UTC")).timestamp())
    assert not QuietHours(None).is_quiet(at(2026, 11, 23, 23))


def test_config_disabled_by_default_and_when_incomplete():
    assert not SmsConfig.from_env({}).enabled
    partial = SmsConfig.from_env({"SMS_PROVIDER": "aliyun", "SMS_SIGN_NAME": "国网供电",
                                  "ALIYUN_SMS_ACCESS_KEY_ID": "id"})
    assert not partial.enabled and partial.missing == ("ALIYUN_SMS_ACCESS_KEY_SECRET",)
    full = SmsConfig.from_env({"SMS_PROVIDER": "Tencent", "SMS_SIGN_NAME": "国网供电",
                               "TENCENT_SMS_SECRET_ID": "a", "TENCENT_SMS_SECRET_KEY": "b",
                               "TENCENT_SMS_SDK_APP_ID": "1400000001",
                               "SMS_CALLBACK_ALLOWED_IPS": "10.0.0.0/8, 127.0.0.1",
                               "SMS_QUIET_HOURS": "22:00-07:30", "SMS_REPLY_LIMITS": "30/h"})
    assert full.enabled and full.provider == "tencent"
    assert full.tencent_endpoint == "https://sms.tencentcloudapi.com"
    assert full.quiet_hours == (time(22), time(7, 30))
    assert full.reply_limits == (RateLimit(30, 3600),)
    assert full.proactive_limits == (RateLimit(1, 60), RateLimit(5, 3600), RateLimit(10, 86400))
    assert len(full.callback_allowed_ips) == 2


@pytest.mark.parametrize("env", [{"SMS_PROVIDER": "twilio"}, {"SMS_REPLY_LIMITS": "lots"},
                                 {"SMS_QUIET_HOURS": "9pm-8am"},
                                 {"SMS_CALLBACK_ALLOWED_IPS": "not-an-ip"},
                                 {"SMS_MAX_ATTEMPTS": "0"}])
def test_config_rejects_inconsistent_values(env):
    with pytest.raises(SmsConfigError):
        SmsConfig.from_env(env)


def test_parse_limits():
    assert parse_limits("2/10min, 3/day", "x") == (RateLimit(2, 600), RateLimit(3, 86400))
    assert parse_limits("", "x") == ()

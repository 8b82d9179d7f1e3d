"""Rendering replies into approved templates: splitting, summarising, options, fallback."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import pytest

from channels.sms.templates import (
    SmsRenderer, TemplateBook, TemplateConfigError, split_text, summarise,
)
from tests.channels.sms.conftest import TEMPLATES


@dataclass
class B:  # the shape of channels.messages.Button (title, payload)
    title: str
    payload: str


@dataclass
class R:  # the shape of channels.messages.Reply (text, buttons, image, custom)
    text: str = ""
    buttons: tuple = ()
    image: str | None = None
    custom: dict | None = field(default=None)


NUMBERS = re.compile(r"\d[\d.:\-]*\d|\d")


def test_split_never_cuts_inside_a_number():
    text = ("您户号3201234567的2026年10月电费为128.56元，用电量243千瓦时，缴费截止2026-11-25，"
            "客户经理电话13812345678，如有疑问请拨打95598。")
    pieces = split_text(text, 35)
    assert all(len(p) <= 35 for p in pieces)
    assert "".join(pieces) == text
    for number in NUMBERS.findall(text):
        assert any(number in p for p in pieces), number


def test_split_prefers_punctuation():
    pieces = split_text("第一句话比较短。第二句话也不长，但是放在一起就超过了限制的长度啦。", 20)
    assert pieces[0][-1] in "。，" and all(len(p) <= 20 for p in pieces)


def test_summarise_drops_whole_sentences_and_points_to_95598():
    text = "".join(f"第{i}条说明，这是一段相当长的文字，电费128.56元。" for i in range(1, 12))
    parts = summarise(text, 35, 3)
    assert len(parts) <= 3
    joined = "".join(parts)
    assert joined.endswith("详询95598")
    assert "第1条说明" in joined
    for number in NUMBERS.findall(joined.replace("详询95598", "")):
        assert number in text


def test_summarise_one_endless_sentence_never_cuts_a_number():
    text = "账户3201234567" + "的电费和用电量" * 30 + "合计128.56元"
    parts = summarise(text, 35, 2)
    assert len(parts) <= 2 and all(len(p) <= 35 for p in parts)
    assert "3201234567" in parts[0]
    assert parts[-1].endswith("详询95598")


def book() -> TemplateBook:
    return TemplateBook.from_dict(TEMPLATES)


def test_text_reply_goes_through_generic_template_with_numbered_options():
    renderer = SmsRenderer(book(), "aliyun", "国网供电", max_parts=3)
    messages, options = renderer.render([
        R("您好，请问要办理什么业务？", buttons=(B("查询电费", "/query_bill"), B("停电查询", "/query_outage"))),
    ])
    assert options == [("查询电费", "/query_bill"), ("停电查询", "/query_outage")]
    assert all(m.template_id == "SMS_900000001" for m in messages)
    text = "".join(m.params["content"] for m in messages)
    assert "回复1 查询电费" in text and "回复2 停电查询" in text
    assert all(len(m.params["content"]) <= 35 for m in messages)
    assert all(m.segments == 1 for m in messages)


def test_mapped_kind_uses_its_template_and_counts_segments():
    renderer = SmsRenderer(book(), "tencent", "国网供电")
    messages, _ = renderer.render([R("账单", custom={"sms": {"kind": "bill_summary", "params": {
        "account": "******4567", "month": "2026年10月", "amount": "128.56", "due_date": "11月25日"}}})])
    (sms,) = messages
    assert sms.template_id == "900005" and list(sms.params) == ["account", "month", "amount", "due_date"]
    assert sms.text == "您户号******4567的2026年10月电费128.56元，请于11月25日前缴纳。"
    assert sms.segments == 1


def test_long_approved_text_is_billed_in_67_character_parts():
    renderer = SmsRenderer(book(), "aliyun", "国网供电")
    sms = renderer.of_kind("outage_notice", {"area": "玄武区孝陵卫街道钟灵街社区及周边" * 2,
                                             "start": "11月25日08:00", "end": "11月25日18:00",
                                             "reason": "线路检修及设备更换"})
    assert len(sms.text) + 6 > 70 and sms.segments == -(-(len(sms.text) + 6) // 67)


def test_no_generic_template_falls_back_and_logs(caplog):
    entries = {k: v for k, v in TEMPLATES.items() if k != "generic_reply"}
    renderer = SmsRenderer(TemplateBook.from_dict(entries), "aliyun", "国网供电")
    with caplog.at_level(logging.WARNING):
        messages, _ = renderer.render([R("您10月电费128.56元。")])
    (sms,) = messages
    assert sms.kind == "fallback" and sms.template_id == "SMS_900000002"
    assert "95598" in sms.text and "128.56" not in sms.text
    assert "fallback" in caplog.text


def test_template_not_approved_at_this_provider_is_not_used():
    entries = {**TEMPLATES, "generic_reply": {**TEMPLATES["generic_reply"], "tencent": ""}}
    renderer = SmsRenderer(TemplateBook.from_dict(entries), "tencent", "国网供电")
    (sms,) = renderer.render([R("你好")])[0]
    assert sms.kind == "fallback"


def test_unmapped_kind_is_sent_as_text_not_dropped():
    renderer = SmsRenderer(book(), "aliyun", "国网供电")
    messages, _ = renderer.render([R("工单GD20261123000123已受理。", custom={"sms": {"kind": "nope"}})])
    assert "GD20261123000123" in "".join(m.params.get("content", "") for m in messages)


@pytest.mark.parametrize("entries", [
    {"x": {"text": "${a}", "params": ["b"]}},
    {"x": {"params": []}},
    {"generic_reply": {"text": "${a}${b}", "params": ["a", "b"]}},
])
def test_bad_templates_config_is_rejected(entries):
    with pytest.raises(TemplateConfigError):
        TemplateBook.from_dict(entries)


def test_shipped_templates_file_loads():
    from channels.sms.config import DEFAULT_TEMPLATES_FILE

    shipped = TemplateBook.load(DEFAULT_TEMPLATES_FILE)
    for kind in ("generic_reply", "fallback", "optout_confirm", "optin_confirm", "bill_summary",
                 "outage_notice", "ticket_receipt"):
        assert kind in shipped.templates

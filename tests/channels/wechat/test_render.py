"""Rendering replies for WeChat: numbered options, links, splitting long texts."""
from __future__ import annotations

from dataclasses import dataclass

from channels.wechat.render import OPTIONS_HINT, Option, render_replies, split_text


@dataclass
class B:
    title: str
    payload: str


@dataclass
class R:
    text: str
    buttons: tuple = ()
    image: str | None = None


def test_buttons_become_numbered_options_and_links():
    out = render_replies([
        R("请选择要查询的月份：", (B("本月", "/query_bill{\"month\":\"本月\"}"), B("上个月", "/query_bill")),),
        R("也可以在网上国网办理", (B("打开网上国网", "https://www.sgcc.com.cn/"), B("人工客服", "/request_human"))),
    ])
    assert out.options == (Option("本月", "/query_bill{\"month\":\"本月\"}"), Option("上个月", "/query_bill"),
                           Option("人工客服", "/request_human"))
    assert out.texts[0] == f"请选择要查询的月份：\n1. 本月\n2. 上个月\n{OPTIONS_HINT}"
    assert '<a href="https://www.sgcc.com.cn/">打开网上国网</a>' in out.texts[1]
    assert "3. 人工客服" in out.texts[1]


def test_link_titles_are_escaped():
    out = render_replies([R("", (B("<b>x</b>", "https://e.example/?a=1&b=\"2\""),))])
    assert out.texts == ('<a href="https://e.example/?a=1&amp;b=&quot;2&quot;">&lt;b&gt;x&lt;/b&gt;</a>',)


def test_long_text_splits_at_sentence_ends_within_the_byte_limit():
    sentences = [f"第{i}句话说明您的电费构成与阶梯电价的计算方法。" for i in range(200)]
    text = "".join(sentences)
    chunks = split_text(text, 2048)
    assert len(chunks) > 1
    assert all(len(c.encode()) <= 2048 for c in chunks)
    assert all(c.endswith("。") for c in chunks)
    assert "".join(chunks) == text


def test_a_single_overlong_sentence_falls_back_to_clauses_then_characters():
    clauses = "，".join(["这是一个没有句号的很长的分句"] * 300)
    chunks = split_text(clauses, 300)
    assert all(len(c.encode()) <= 300 for c in chunks)
    assert all(c.endswith("，") for c in chunks[:-1])
    assert "".join(chunks) == clauses
    blob = "电" * 1000
    chunks = split_text(blob, 100)
    assert all(len(c.encode()) <= 100 for c in chunks) and "".join(chunks) == blob


"""Masking of 户号, phones and names."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from integrations.log_masking import mask_record
from integrations.masking import log_conversation_id, mask_account, mask_name, mask_openid, mask_phone, mask_text

ROOT = Path(__file__).resolve().parents[2]


def test_spec_examples():
    assert mask_account("3201234567") == "******4567"
    assert mask_phone("13812345678") == "*******5678"
    assert mask_name("张三丰") == "张**"


@pytest.mark.parametrize("value, expected", [(None, ""), ("", ""), ("123", "***"), (" 3201234567 ", "******4567")])
def test_edge_values(value, expected):
    assert mask_account(value) == expected


@pytest.mark.parametrize("name, expected", [("李", "*"), ("欧阳修", "欧**"), (None, ""),
                                            ("宁州市百家湖餐饮", "宁*******")])
def test_names(name, expected):
    assert mask_name(name) == expected


@pytest.mark.parametrize("text, expected", [
    ("户号3201234567已绑定", "户号******4567已绑定"),
    ("手机13812345678，户号3201234567", "手机*******5678，户号******4567"),
    ("打+86 138-1234-5678找我", "打+** ***-****-5678找我"),
    ("全角３２０１２３４５６７", "全角******４５６７"),
    ("工单GD20261123000123不动", "工单GD20261123000123不动"),
    ("金额123.45元，12位数字123456789012不动", "金额123.45元，12位数字123456789012不动"),
    ("", ""),
])
def test_mask_text(text, expected):
    assert mask_text(text) == expected


# -- log records: message, traceback and stack ---------------------------------------------

def _failed_lookup_record() -> logging.LogRecord:
    try:
        raise LookupError("no account 3201234567 for 13812345678")
    except LookupError:
        return logging.getLogger("tests.masking").makeRecord(
            "tests.masking", logging.ERROR, __file__, 1, "lookup of %s failed", ("3202345678",),
            sys.exc_info(), sinfo="Stack (most recent call last):\n  caller(3203456789)")


def test_mask_record_masks_message_traceback_and_stack():
    record = mask_record(_failed_lookup_record())
    text = logging.Formatter("%(levelname)s %(message)s").format(record)
    for number in ("3201234567", "13812345678", "3202345678", "3203456789"):
        assert number not in text
    assert text.startswith("ERROR lookup of ******5678 failed\nTraceback (most recent call last)")
    assert "LookupError: no account ******4567 for *******5678" in text
    assert "caller(******6789)" in text
    assert record.exc_info is None  # no handler can format the raw exception again


def test_installed_masking_covers_logger_exception_in_a_process():
    program = (
        "import logging\n"
        "from integrations.log_masking import install_log_masking\n"
        "install_log_masking()\n"
        "logging.basicConfig(format='%(message)s')\n"
        "try:\n"
        "    raise KeyError('/billing/accounts/3201234567/bills')\n"
        "except KeyError:\n"
        "    logging.getLogger('aiohttp.server').exception('Error handling request')\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert "KeyError: '/billing/accounts/******4567/bills'" in done.stderr
    assert "3201234567" not in done.stderr


def test_wechat_openids_keep_their_last_4_in_every_form():
    openid = "o6_bmjrPTlm6_2sgVt7hMZ0123456789"  # a digit run inside must not hide it from the rule
    assert log_conversation_id(f"wechat:{openid}") == "wechat:…6789"
    assert mask_text(f"delivery reply to wechat:{openid}: sent") == "delivery reply to wechat:…6789: sent"
    assert mask_text(f"POST /wechat?signature=ab&openid={openid}&nonce=1") == \
        "POST /wechat?signature=ab&openid=…6789&nonce=1"
    assert mask_text(f'{{"touser": "{openid}", "msgtype": "text"}}') == '{"touser": "…6789", "msgtype": "text"}'
    assert mask_text(f"<FromUserName><![CDATA[{openid}]]></FromUserName>") == \
        "<FromUserName><![CDATA[…6789]]></FromUserName>"
    assert mask_text(mask_text(f"wechat:{openid}")) == "wechat:…6789"  # masking twice changes nothing
    assert mask_openid(openid) == "…6789" and mask_openid("abc") == "***"
    assert mask_text("web:ab0123456789cdefghijkl") == "web:ab012345…"  # digits inside a session id

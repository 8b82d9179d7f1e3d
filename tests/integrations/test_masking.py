"""Masking of 户号, phones and names."""
from __future__ import annotations

import pytest

from integrations.masking import mask_account, mask_name, mask_phone, mask_text


def test_spec_examples():
    assert mask_account("3201234567") == "******4567"
    assert mask_phone("13812345678") == "*******5678"
    assert mask_name("张三丰") == "张**"


@pytest.mark.parametrize("value, expected", [(None, ""), ("", ""), ("123", "***"), (" 3201234567 ", "******4567")])
def test_edge_values(value, expected):
    assert mask_account(value) == expected


@pytest.mark.parametrize("name, expected", [("李", "*"), ("欧阳修", "欧**"), (None, ""), ("宁州市百家湖餐饮", "宁*******")])
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

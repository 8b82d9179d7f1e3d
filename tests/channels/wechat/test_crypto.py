"""Signature checks and AES (safe mode) crypto, against WeChat's published sample vectors."""
from __future__ import annotations

import base64

import pytest
from wechatpy.crypto import PrpCrypto

from channels.wechat.crypto import ForgedRequest, WeChatSecurity, sign
from channels.wechat.xmlmsg import parse_xml

# Source: WeChat's official 消息加解密 sample code for 公众号 (WXBizMsgCrypt, Python "Sample.py" by
# jonyqin, 2014-09-11), linked from https://mp.weixin.qq.com/wiki?t=resource/res_main&id=mp1434696670;
# a copy is public at github.com/charlesXu86/Chatbot_CN Chatbot_Web/impl/weixin/Sample.py.
OFFICIAL_TOKEN = "spamtest"
OFFICIAL_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
OFFICIAL_APP_ID = "wx2c2769f8efd9abc2"
OFFICIAL_TIMESTAMP = "1409735669"
OFFICIAL_NONCE = "1320562132"
OFFICIAL_MSG_SIGNATURE = "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
OFFICIAL_ENCRYPT = (
    "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAF"
    "mOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8d"
    "KOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5"
    "RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsN"
    "PfUM669WuMyVWQLCzpu9GhglF2PE="
)

# Source: WeChat's official Java sample (WXBizMsgCryptTest.java of the same 消息加解密 download):
# token "pamtest", AppID wxb11529c136998cb6, random prefix "aaaabbbbccccdddd".
JAVA_APP_ID = "wxb11529c136998cb6"
JAVA_REPLY = "我是中文abcd123"
JAVA_AFTER_AES = "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="


def official() -> WeChatSecurity:
    return WeChatSecurity(OFFICIAL_TOKEN, OFFICIAL_APP_ID, (OFFICIAL_AES_KEY,))


def test_official_sample_decrypts_to_the_published_message():
    xml = official().decrypt(OFFICIAL_ENCRYPT, OFFICIAL_MSG_SIGNATURE, OFFICIAL_TIMESTAMP, OFFICIAL_NONCE)
    fields = parse_xml(xml)
    assert fields["FromUserName"] == "oyORnuP8q7ou2gfYjqLzSIWZf0rs"
    assert fields["Content"] == "abcdteT"
    assert fields["MsgId"] == "6054768590064713728"


def test_official_msg_signature_is_sha1_of_sorted_parts():
    assert sign(OFFICIAL_TOKEN, OFFICIAL_TIMESTAMP, OFFICIAL_NONCE, OFFICIAL_ENCRYPT) == OFFICIAL_MSG_SIGNATURE


def test_official_java_vector_encrypts_identically():
    class FixedRandom(PrpCrypto):  # the published vector fixes the 16-byte random prefix
        def get_random_string(self):
            return "aaaabbbbccccdddd"

    key = base64.b64decode(OFFICIAL_AES_KEY + "=")
    assert FixedRandom(key).encrypt(JAVA_REPLY, JAVA_APP_ID).decode() == JAVA_AFTER_AES


def test_tampered_signature_or_ciphertext_is_rejected():
    with pytest.raises(ForgedRequest):
        official().decrypt(OFFICIAL_ENCRYPT, "0" * 40, OFFICIAL_TIMESTAMP, OFFICIAL_NONCE)
    with pytest.raises(ForgedRequest):  # a different nonce changes the signature base
        official().decrypt(OFFICIAL_ENCRYPT, OFFICIAL_MSG_SIGNATURE, OFFICIAL_TIMESTAMP, "1320562133")


def test_ciphertext_for_another_app_id_is_rejected_even_with_a_valid_signature():
    other = WeChatSecurity(OFFICIAL_TOKEN, "wx0000000000000000", (OFFICIAL_AES_KEY,))
    with pytest.raises(ForgedRequest):
        other.decrypt(OFFICIAL_ENCRYPT, OFFICIAL_MSG_SIGNATURE, OFFICIAL_TIMESTAMP, OFFICIAL_NONCE)


def test_previous_key_is_accepted_during_rotation_and_unknown_keys_are_not():
    new_key = "B" * 43
    old = WeChatSecurity("tok", "wx1111111111111111", (OFFICIAL_AES_KEY,))
    encrypted, signature = old.encrypt("<xml><Content>旧密钥</Content></xml>", "1700000000", "n1")
    rotating = WeChatSecurity("tok", "wx1111111111111111", (new_key, OFFICIAL_AES_KEY))
    assert parse_xml(rotating.decrypt(encrypted, signature, "1700000000", "n1"))["Content"] == "旧密钥"
    rotated = WeChatSecurity("tok", "wx1111111111111111", (new_key,))
    with pytest.raises(ForgedRequest):
        rotated.decrypt(encrypted, signature, "1700000000", "n1")


def test_signature_check_and_replay_window():
    security = WeChatSecurity("tok", "wx1", replay_window_seconds=300)
    security.check_signature(sign("tok", "1700000000", "abc"), "1700000000", "abc")
    with pytest.raises(ForgedRequest):
        security.check_signature(sign("other", "1700000000", "abc"), "1700000000", "abc")
    security.check_timestamp("1700000000", now=1700000299)
    for stale in ("1700000000", "1699999000"):
        with pytest.raises(ForgedRequest):
            security.check_timestamp(stale, now=1700000301 if stale == "1700000000" else 1700000000)
    with pytest.raises(ForgedRequest):
        security.check_timestamp("17e8", now=1700000000)

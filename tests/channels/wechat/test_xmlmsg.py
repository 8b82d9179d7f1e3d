"""Safe XML parsing: no DTDs, no entities, no expansion bombs."""
from __future__ import annotations

import pytest

from channels.wechat.xmlmsg import MalformedXml, parse_xml


def test_flat_message_with_cdata_and_nested_event_info():
    fields = parse_xml(
        b"<xml><FromUserName><![CDATA[o_user-1]]></FromUserName><CreateTime>1700000000</CreateTime>"
        b"<Content><![CDATA[\xe6\x9f\xa5\xe7\x94\xb5\xe8\xb4\xb9 <b>]]></Content>"
        b"<ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType></ScanCodeInfo></xml>")
    assert fields == {"FromUserName": "o_user-1", "CreateTime": "1700000000", "Content": "查电费 <b>",
                      "ScanCodeInfo.ScanType": "qrcode"}


@pytest.mark.parametrize("body", [
    # billion laughs
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
    b"<xml><Content>&lol2;</Content></xml>",
    # external entity (XXE)
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b"<xml><Content>&xxe;</Content></xml>",
    # any DTD at all
    b'<!DOCTYPE xml SYSTEM "http://127.0.0.1:9/evil.dtd"><xml><Content>a</Content></xml>',
    b"<xml><Content>unterminated</xml>",
    b"not xml at all",
    b"<root><Content>a</Content></root>",
])
def test_hostile_or_malformed_documents_are_refused(body):
    with pytest.raises(MalformedXml):
        parse_xml(body)

"""Provider signatures against the worked examples in the providers' own documentation."""
from __future__ import annotations

from channels.sms.providers.aliyun import canonical_query, rpc_signature, string_to_sign
from channels.sms.providers.tencent import canonical_request, tc3_authorization, tc3_signature


def test_aliyun_rpc_signature_matches_documented_example():
    # Source: Aliyun 短信服务 "HTTP 协议及签名 / 签名机制" worked example
    # (https://help.aliyun.com/document_detail/101343.html, English version
    # https://www.alibabacloud.com/help/en/sms/signature-method): AccessKeyId "testId",
    # AccessKeySecret "testSecret", GET, and the parameters below; documented signature
    # "zJDF+Lrzhj/ThnlvIToysFRq6t4=" (URL-encoded "zJDF%2BLrzhj%2FThnlvIToysFRq6t4%3D").
    params = {
        "AccessKeyId": "testId", "Action": "SendSms", "Format": "XML", "OutId": "123",
        "PhoneNumbers": "15300000001", "RegionId": "cn-hangzhou",
        "SignName": "阿里云短信测试专用", "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466", "SignatureVersion": "1.0",
        "TemplateCode": "SMS_71390007", "TemplateParam": '{"customer":"test"}',
        "Timestamp": "2017-07-12T02:42:19Z", "Version": "2017-05-25",
    }
    assert canonical_query(params) == (
        "AccessKeyId=testId&Action=SendSms&Format=XML&OutId=123&PhoneNumbers=15300000001"
        "&RegionId=cn-hangzhou&SignName=%E9%98%BF%E9%87%8C%E4%BA%91%E7%9F%AD%E4%BF%A1%E6%B5%8B"
        "%E8%AF%95%E4%B8%93%E7%94%A8&SignatureMethod=HMAC-SHA1"
        "&SignatureNonce=45e25e9b-0a6f-4070-8c85-2956eda1b466&SignatureVersion=1.0"
        "&TemplateCode=SMS_71390007&TemplateParam=%7B%22customer%22%3A%22test%22%7D"
        "&Timestamp=2017-07-12T02%3A42%3A19Z&Version=2017-05-25"
    )
    assert string_to_sign("GET", params).startswith(
        "GET&%2F&AccessKeyId%3DtestId%26Action%3DSendSms%26Format%3DXML%26OutId%3D123")
    assert rpc_signature("testSecret", "GET", params) == "zJDF+Lrzhj/ThnlvIToysFRq6t4="
    assert rpc_signature("testSecret", "GET", {**params, "Signature": "ignored"}) \
        == "zJDF+Lrzhj/ThnlvIToysFRq6t4="
    assert rpc_signature("testSecret", "POST", params) != "zJDF+Lrzhj/ThnlvIToysFRq6t4="


def test_aliyun_encoding_rules():
    # RFC 3986 as the spec says: space → %20 (not +), * → %2A, ~ kept.
    assert canonical_query({"a b": "x*y~z"}) == "a%20b=x%2Ay~z"


def test_tencent_tc3_signature_matches_documented_example():
    # Source: Tencent Cloud API 3.0 "签名方法 v3" (CVM, https://cloud.tencent.com/document/api/213/30654;
    # English https://www.tencentcloud.com/document/api/213/31575): SecretId
    # "AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******", SecretKey "Gu5t9xGARNpq86cd98joQYCN3*******",
    # DescribeInstances on cvm.tencentcloudapi.com at timestamp 1551113065 (2019-02-25), payload
    # {"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]};
    # documented hashed payload 35e9c5b0…f064, hashed canonical request 5ffe6a04…7031 and
    # signature 2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c.
    payload = ('{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], '
               '"Name": "instance-name"}]}')
    canonical = canonical_request(payload, "cvm.tencentcloudapi.com")
    assert canonical == (
        "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n"
        "\ncontent-type;host\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064")
    import hashlib
    assert hashlib.sha256(canonical.encode()).hexdigest() == \
        "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
    signature = tc3_signature("Gu5t9xGARNpq86cd98joQYCN3*******", "cvm", 1551113065, canonical)
    assert signature == "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
    assert tc3_authorization("AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******",
                             "Gu5t9xGARNpq86cd98joQYCN3*******", "cvm", "cvm.tencentcloudapi.com",
                             payload, 1551113065) == (
        "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******/2019-02-25/cvm/"
        "tc3_request, SignedHeaders=content-type;host, "
        "Signature=2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c")


def test_tencent_signature_depends_on_every_input():
    payload = '{"a": 1}'
    base = tc3_signature("k", "sms", 1551113065, canonical_request(payload, "h"))
    assert tc3_signature("k2", "sms", 1551113065, canonical_request(payload, "h")) != base
    assert tc3_signature("k", "sms", 1551113066 + 86400, canonical_request(payload, "h")) != base
    assert tc3_signature("k", "sms", 1551113065, canonical_request('{"a": 2}', "h")) != base
    assert tc3_signature("k", "sms", 1551113065, canonical_request(payload, "h2")) != base

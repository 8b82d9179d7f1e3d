"""Fuzz ``GET``/``POST /wechat`` in plain, compatible and safe (AES) mode.

One gateway per mode (create_app, real Redis, the loopback WeChat API fake, the labelled Rasa
fake). Inputs: random, missing and repeated query parameters (odd digits in ``timestamp``),
hostile bodies (bytes, truncated XML, DTDs, entity bombs, XXE, 1 MiB bodies, wrong content
types and encodings); well-formed pushes with a wrong signature; and pushes *validly signed*
(and, for AES, validly encrypted with our key and AppID and a valid ``msg_signature``) around
fuzzed XML documents, so the inputs also reach the parsing, deduplication and queueing behind
the checks. A push that was accepted is followed until its job left the dispatcher, so a failing
background job is pinned to its input.

Pass: every answer below 500, and no unhandled exception logged (the rule is
``tests.fuzz.support.is_unhandled``).
"""
from __future__ import annotations

import asyncio
import base64
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz import strategies as fz
from tests.fuzz.support import FUZZ_SETTINGS, check, fuzz_stats, send, start_gateway

# wechatpy's PrpCrypto draws its 16 random bytes from the random module while we encrypt.
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module")

APP_ID = "wx" + "f0" * 8
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
TOKEN = "fuzztoken" + "x" * 8


@pytest.fixture(scope="module", params=["plain", "compatible", "safe"])
def wechat_gateway(request, loop_thread, module_env, redis_url, unhandled_log):
    from fakes.rasa_rest import FakeRasaRest
    from fakes.wechat_api import FakeWeChatApi

    mode = request.param
    api = FakeWeChatApi(app_id=APP_ID)
    rasa = FakeRasaRest()
    loop_thread.run(api.start())
    loop_thread.run(rasa.start())
    env = {"REDIS_URL": redis_url, "RASA_URL": rasa.url, "WECHAT_TOKEN": TOKEN,
           "WECHAT_APP_ID": api.app_id, "WECHAT_APP_SECRET": api.app_secret,
           "WECHAT_AES_KEY": AES_KEY, "WECHAT_ENCRYPT_MODE": mode, "WECHAT_API_BASE_URL": api.base_url}
    for key, value in env.items():
        module_env.setenv(key, value)
    gateway = loop_thread.run(start_gateway())
    gateway.mode = mode
    yield gateway
    assert not unhandled_log.take(), "unhandled exception logged after the last input"
    loop_thread.run(gateway.close(), timeout=120)
    loop_thread.run(rasa.close())
    loop_thread.run(api.close())
    unhandled_log.take()  # shutdown chatter of this module's fakes is not an input's doing


# --- request strategies -------------------------------------------------------------------------

QUERY_KEYS = ["signature", "timestamp", "nonce", "openid", "encrypt_type", "msg_signature", "echostr"]


def query_values(key: str) -> st.SearchStrategy[str]:
    if key == "timestamp":
        return st.one_of(st.sampled_from(fz.ODD_NUMBERS), st.builds(lambda d: str(int(time.time()) + d),
                                                                   st.integers(-10 ** 6, 10 ** 6)),
                         fz.url_text(20))
    if key == "encrypt_type":
        return st.one_of(st.sampled_from(["aes", "AES", "raw", "", "aes ", "ａｅｓ"]), fz.url_text(8))
    if key in ("signature", "msg_signature"):
        return st.one_of(fz.hex_digests(), st.just("é" * 40),
                         st.just("０" * 40), fz.url_text(70))
    return st.one_of(fz.url_text(40), fz.huge_text())


def random_query() -> st.SearchStrategy:
    pair = st.sampled_from(QUERY_KEYS + ["token", "x"]).flatmap(
        lambda k: st.tuples(st.just(k), query_values(k)))
    return st.one_of(st.lists(pair, max_size=10), fz.raw_query())


def sign(*parts: str) -> str:
    from fakes.wechat_api import wechat_signature

    return wechat_signature(*parts)


def encrypt(app_id: str, document: str, timestamp: str, nonce: str) -> tuple[str, str]:
    from channels.wechat.crypto import WeChatSecurity

    return WeChatSecurity(TOKEN, app_id, (AES_KEY,)).encrypt(document, timestamp, nonce)


def envelope(cipher: str, document: str, shape: str) -> str:
    if shape == "safe":
        return f"<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName><Encrypt><![CDATA[{cipher}]]></Encrypt></xml>"
    if shape == "compatible" and document.endswith("</xml>"):
        return document[:-len("</xml>")] + f"<Encrypt><![CDATA[{cipher}]]></Encrypt></xml>"
    return f"<xml><Encrypt>{cipher}</Encrypt></xml>"


NONCES = itertools.count()
KINDS = ["random", "wrong_signature", "signed_plain", "signed_aes", "signed_aes_garbage",
         "signed_aes_wrong_appid", "stale"]


@dataclass
class Push:
    """One POST /wechat as generated. Signatures, timestamps and ciphertexts are made when it is
    sent (:meth:`build`), so a recorded ``@example`` stays valid at any time."""

    kind: str                 # one of KINDS
    query: Any = ()           # "random": the whole query; otherwise pairs after the signed ones
    body: bytes = b""         # "random": the body; otherwise the XML document inside
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/xml"})
    offset: int = 0           # timestamp minus now
    nonce: str = "1"
    fresh_nonce: bool = False  # append a per-process counter: not a replay of an earlier push
    signature: str = ""       # "wrong_signature": the signature sent
    cipher: str = ""          # "signed_aes_garbage": the ciphertext that is none
    shape: str = "safe"       # envelope of encrypted pushes: safe | compatible | bare
    encrypt_type: str = "aes"

    def build(self, app_id: str) -> tuple[Any, bytes]:
        """(query, body) signed for now."""
        if self.kind == "random":
            return self.query, self.body
        timestamp, nonce = str(int(time.time()) + self.offset), self.nonce
        if self.fresh_nonce:
            nonce += str(next(NONCES))
        signature = self.signature if self.kind == "wrong_signature" else sign(TOKEN, timestamp, nonce)
        query = [("timestamp", timestamp), ("nonce", nonce), ("signature", signature)]
        document = self.body.decode("utf-8", "surrogatepass")
        if self.kind in ("signed_plain", "wrong_signature", "stale"):
            return query + list(self.query), self.body
        if self.kind == "signed_aes":
            try:
                cipher, msg_signature = encrypt(app_id, document, timestamp, nonce)
            except UnicodeEncodeError:  # lone surrogates cannot be encrypted as UTF-8
                return query + list(self.query), self.body
        elif self.kind == "signed_aes_wrong_appid":
            cipher, _ = encrypt("wx" + "0" * 16, self.body.decode("utf-8", "replace"), timestamp, nonce)
            msg_signature = sign(TOKEN, timestamp, nonce, cipher)
        else:  # a valid msg_signature over a ciphertext that is no ciphertext
            cipher = self.cipher
            msg_signature = sign(TOKEN, timestamp, nonce, cipher)
        body = envelope(cipher, document, self.shape).encode("utf-8", "surrogatepass")
        return query + [("encrypt_type", self.encrypt_type), ("msg_signature", msg_signature)] + \
            list(self.query), body


@st.composite
def pushes(draw) -> Push:
    """One POST /wechat of any kind."""
    kind = draw(st.sampled_from(KINDS))
    if kind == "random":
        return Push(kind, draw(random_query()), draw(fz.xml_bodies()), draw(fz.headers()))
    extra = draw(st.lists(st.sampled_from(QUERY_KEYS).flatmap(
        lambda k: st.tuples(st.just(k), query_values(k))), max_size=3))
    if kind in ("signed_plain", "wrong_signature", "stale"):
        extra = [("openid", fz.without_surrogates(draw(fz.openids())))] + extra
    return Push(
        kind, extra, draw(fz.message_documents()).encode("utf-8", "surrogatepass"),
        headers=draw(fz.headers()) if draw(st.integers(0, 3)) == 0 else {"Content-Type": "text/xml"},
        offset=draw(st.sampled_from([-10 ** 5, -301, 301, 10 ** 7])) if kind == "stale"
        else draw(st.integers(-250, 250)),
        nonce=draw(st.one_of(fz.chars_from("0123456789", 1, 12), fz.url_text(64))),
        # Mostly fresh: Hypothesis repeats small nonces, and a signed URL used again with other
        # content is refused as a replay before the document is looked at.
        fresh_nonce=draw(st.integers(0, 9)) > 0,
        signature=draw(query_values("signature")) if kind == "wrong_signature" else "",
        cipher=draw(st.one_of(st.binary(min_size=1, max_size=300).map(lambda b: base64.b64encode(b).decode()),
                              fz.url_text(80).map(lambda s: s.replace("]]>", ""))))
        if kind == "signed_aes_garbage" else "",
        shape=draw(st.sampled_from(["safe", "compatible", "bare"])),
        encrypt_type=draw(st.sampled_from(["aes", "AES"])),
    )


async def settle(gateway, body: bytes) -> None:
    """Wait until the job an accepted push queued (if any) has left the dispatcher."""
    from channels.app import REDIS_KEY
    from channels.wechat import WECHAT_CHANNEL
    from channels.wechat.xmlmsg import MalformedXml, parse_xml

    try:
        openid = parse_xml(body).get("FromUserName", "")
    except MalformedXml:
        openid = ""
    dispatcher = gateway.app[WECHAT_CHANNEL].dispatcher
    redis = gateway.app[REDIS_KEY]
    users = [openid] if openid else []
    deadline = time.monotonic() + 30
    while users and await redis.sismember(dispatcher.active_key, users[0]):
        assert time.monotonic() < deadline, "accepted push still not handled after 30 s"
        await asyncio.sleep(0.005)


# --- tests --------------------------------------------------------------------------------------

@FUZZ_SETTINGS
@given(push=pushes())
# Found by this fuzz: a non-ASCII signature made hmac.compare_digest raise TypeError (500).
@example(push=Push("wrong_signature", body=b"<xml/>", signature="\u00e9" * 40))
@example(push=Push("signed_aes_garbage", body=b"<xml/>", cipher="AAAA", encrypt_type="aes",
                   query=[("msg_signature", "\u00e9" * 40)]))
# Found by this fuzz: a body that does not decode as its Content-Encoding raised out of the
# handler's read (500); channels.app's middleware answers 400.
@example(push=Push("signed_plain", body=b"<xml/>", headers={"Content-Encoding": "gzip"}))
def test_post_wechat_never_fails(wechat_gateway, loop_thread, unhandled_log, push):
    gw = wechat_gateway
    stats = fuzz_stats(f"POST /wechat ({gw.mode} mode)")
    query, body = push.build(APP_ID)
    started = time.monotonic()
    status = loop_thread.run(send(gw, "POST", "/wechat", query, body, push.headers))
    if status == 200:  # the document inside, for encrypted pushes
        loop_thread.run(settle(gw, body if push.kind == "random" else push.body))
    stats.seconds += time.monotonic() - started
    check(stats, unhandled_log, status, (push.kind, query, body[:300], push.headers))


@st.composite
def verifications(draw) -> Push:
    """One GET /wechat (server URL verification): random, or signed around a fuzzed echostr."""
    kind = draw(st.sampled_from(["random", "signed_plain", "wrong_signature", "stale"]))
    if kind == "random":
        return Push(kind, draw(random_query()), headers=draw(fz.headers()))
    return Push(kind, [("echostr", fz.without_surrogates(draw(fz.any_text(600))))]
                + draw(st.lists(st.sampled_from(QUERY_KEYS).flatmap(
                    lambda k: st.tuples(st.just(k), query_values(k))), max_size=3)),
                offset=draw(st.integers(-250, 250)) if kind != "stale" else 10 ** 6,
                nonce=draw(fz.chars_from("0123456789", 1, 12)),
                signature=draw(query_values("signature")), headers=draw(fz.headers()))


@FUZZ_SETTINGS
@given(push=verifications())
@example(push=Push("wrong_signature", [("echostr", "x")], signature="\u00e9" * 40))
def test_get_wechat_never_fails(wechat_gateway, loop_thread, unhandled_log, push):
    gw = wechat_gateway
    stats = fuzz_stats(f"GET /wechat ({gw.mode} mode)")
    query, _ = push.build(APP_ID)
    started = time.monotonic()
    status = loop_thread.run(send(gw, "GET", "/wechat", query, None, push.headers))
    stats.seconds += time.monotonic() - started
    check(stats, unhandled_log, status, (push.kind, query))

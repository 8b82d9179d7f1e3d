"""Signature checks and AES message encryption of the 公众号 callback protocol (消息加解密).

Built on wechatpy's signer and ``PrpCrypto`` (AES-256-CBC, PKCS#7 to 32 bytes, random(16) +
length + xml + appid).  Comparisons are constant-time, the timestamp must fall inside a replay
window, and during an EncodingAESKey rotation the previous key is still accepted.
"""
from __future__ import annotations

import base64
import hmac
import time

from wechatpy.crypto import PrpCrypto
from wechatpy.utils import WeChatSigner

from channels.digits import ascii_int


class ForgedRequest(Exception):
    """Signature, msg_signature, timestamp or ciphertext failed verification."""


def sign(*parts: str) -> str:
    """SHA1 of the sorted, concatenated parts (WeChat's signature and msg_signature)."""
    signer = WeChatSigner()
    signer.add_data(*parts)
    return signer.signature


def _same(expected: str, given: str) -> bool:
    """Constant-time, case-insensitive comparison of a hex digest with what a request sent
    (as bytes: compare_digest refuses str with non-ASCII characters, which requests may carry)."""
    return hmac.compare_digest(expected.encode(), given.lower().encode("utf-8", "surrogatepass"))


class WeChatSecurity:
    """Verifies and decrypts callback requests; encrypts payloads (used by tests and replies)."""

    def __init__(self, token: str, app_id: str, aes_keys: tuple[str, ...] = (),
                 replay_window_seconds: int = 300) -> None:
        self._token = token
        self._app_id = app_id
        self._replay_window = replay_window_seconds
        self._keys = [base64.b64decode(k + "=") for k in aes_keys]

    def check_timestamp(self, timestamp: str, now: float | None = None) -> None:
        """Reject timestamps that are not ASCII-digit integers or lie outside the replay window."""
        seconds = ascii_int(timestamp, max_digits=12)
        if seconds is None:
            raise ForgedRequest("timestamp is not an integer")
        now = time.time() if now is None else now
        if abs(now - seconds) > self._replay_window:
            raise ForgedRequest("timestamp outside the replay window")

    def check_signature(self, signature: str, timestamp: str, nonce: str) -> None:
        """``signature`` = sha1(sort(token, timestamp, nonce)), sent on every request."""
        if not _same(sign(self._token, timestamp, nonce), signature):
            raise ForgedRequest("bad signature")

    def decrypt(self, encrypted: str, msg_signature: str, timestamp: str, nonce: str) -> str:
        """Verify ``msg_signature`` over the ciphertext and decrypt it with the current key, then
        with the previous one; the embedded AppID must match ours."""
        expected = sign(self._token, timestamp, nonce, encrypted)
        if not _same(expected, msg_signature):
            raise ForgedRequest("bad msg_signature")
        for key in self._keys:
            try:
                return PrpCrypto(key).decrypt(encrypted, self._app_id)
            except Exception:  # noqa: BLE001 - wrong key, bad padding, bad appid: try the next key
                continue
        raise ForgedRequest("ciphertext does not decrypt to our AppID with any configured key")

    def encrypt(self, xml: str, timestamp: str, nonce: str) -> tuple[str, str]:
        """Encrypt ``xml`` with the current key; returns (Encrypt, msg_signature)."""
        if not self._keys:
            raise ValueError("no EncodingAESKey configured")
        encrypted = PrpCrypto(self._keys[0]).encrypt(xml, self._app_id)
        encrypted = encrypted.decode() if isinstance(encrypted, bytes) else encrypted
        return encrypted, sign(self._token, timestamp, nonce, encrypted)

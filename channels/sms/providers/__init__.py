"""SMS providers: one small adapter per provider behind :class:`~channels.sms.providers.base.SmsSender`."""
from __future__ import annotations

from channels.sms.config import SmsConfig
from channels.sms.providers.base import Outcome, SendResult, SmsRequest, SmsSender

__all__ = ["Outcome", "SendResult", "SmsRequest", "SmsSender", "sender_from_config"]


def sender_from_config(config: SmsConfig) -> SmsSender:
    """The sender of the configured provider (the channel must be enabled)."""
    if config.provider == "aliyun":
        from channels.sms.providers.aliyun import AliyunSmsSender

        return AliyunSmsSender(
            access_key_id=config.aliyun_access_key_id,
            access_key_secret=config.aliyun_access_key_secret,
            endpoint=config.aliyun_endpoint,
            sign_name=config.sign_name,
            timeout_s=config.send_timeout_seconds,
        )
    if config.provider == "tencent":
        from channels.sms.providers.tencent import TencentSmsSender

        return TencentSmsSender(
            secret_id=config.tencent_secret_id,
            secret_key=config.tencent_secret_key,
            sdk_app_id=config.tencent_sdk_app_id,
            endpoint=config.tencent_endpoint,
            region=config.tencent_region,
            sign_name=config.sign_name,
            timeout_s=config.send_timeout_seconds,
        )
    raise ValueError(f"SMS provider not configured: {config.provider!r}")

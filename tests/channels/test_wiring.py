"""The gateway's wiring: every channel's configuration read once in GatewayConfig, every
configuration error a clean exit 2 of ``python -m channels``, and no import cycle between the
app and its channels."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from channels.config import ConfigError, GatewayConfig
from channels.sms.config import SmsConfig
from channels.wechat.config import WeChatConfig

ROOT = Path(__file__).resolve().parents[2]
CHANNEL_PREFIXES = ("SMS_", "ALIYUN_SMS", "TENCENT_SMS", "WECHAT_", "GATEWAY_")


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(CHANNEL_PREFIXES)}
    env.update(PYTHONPATH=str(ROOT), REDIS_URL="redis://127.0.0.1:1/0",
               POWERDESK_RUN_DIR=str(tmp_path), GATEWAY_PORT="0", GATEWAY_ADMIN_PORT="0")
    env.update(extra)
    return env


def test_the_channels_settings_are_part_of_the_gateway_config(tmp_path):
    config = GatewayConfig.from_env({
        "WECHAT_TOKEN": "token", "WECHAT_APP_ID": "wx0123456789abcdef", "WECHAT_APP_SECRET": "s",
        "WECHAT_WORKERS": "3", "SMS_PROVIDER": "aliyun", "SMS_SIGN_NAME": "国网供电",
        "ALIYUN_SMS_ACCESS_KEY_ID": "id", "ALIYUN_SMS_ACCESS_KEY_SECRET": "secret",
        "SMS_JOB_TIMEOUT_SECONDS": "45"})
    assert isinstance(config.wechat, WeChatConfig) and config.wechat.enabled
    assert config.wechat.workers == 3
    assert isinstance(config.sms, SmsConfig) and config.sms.enabled
    assert config.sms.job_timeout_seconds == 45 and config.sms.templates is not None
    defaults = GatewayConfig.from_env({})
    assert not defaults.wechat.enabled and not defaults.sms.enabled


@pytest.mark.parametrize("env", [
    {"WECHAT_TOKEN": "token"},  # no AppID / AppSecret
    {"WECHAT_TOKEN": "token", "WECHAT_APP_ID": "wx1", "WECHAT_APP_SECRET": "s",
     "WECHAT_ENCRYPT_MODE": "safe"},  # no EncodingAESKey
    {"WECHAT_WORKERS": "٣"},
    {"SMS_PROVIDER": "carrier-pigeon"},
    {"SMS_JOB_TIMEOUT_SECONDS": "soon"},
])
def test_channel_errors_are_config_errors_of_the_gateway(env):
    with pytest.raises(ConfigError):
        GatewayConfig.from_env(env)


@pytest.mark.parametrize("env, named", [
    ({"WECHAT_TOKEN": "token"}, "WECHAT_APP_ID"),
    ({"WECHAT_TOKEN": "token", "WECHAT_APP_ID": "wx1", "WECHAT_APP_SECRET": "s",
      "WECHAT_ENCRYPT_MODE": "compatible", "WECHAT_AES_KEY": "short"}, "WECHAT_AES_KEY"),
    ({"WECHAT_ENCRYPT_MODE": "secret"}, "WECHAT_ENCRYPT_MODE"),
    ({"WECHAT_TOKEN": "token", "WECHAT_APP_ID": "wx1", "WECHAT_APP_SECRET": "s",
      "WECHAT_TEMPLATES_FILE": "/nonexistent/wechat_templates.yml"}, "wechat_templates.yml"),
    ({"SMS_JOB_TIMEOUT_SECONDS": "-1"}, "SMS_JOB_TIMEOUT_SECONDS"),
    ({"GATEWAY_PORT": "eighty"}, "GATEWAY_PORT"),
])
def test_python_m_channels_exits_2_with_one_line(tmp_path, env, named):
    done = subprocess.run([sys.executable, "-m", "channels"], env=clean_env(tmp_path, **env),
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("gateway configuration error:") and named in line


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_the_channels_do_not_import_the_app():
    done = run_python(
        "import sys\n"
        "import channels.sms, channels.wechat, channels.webchat, channels.delivery\n"
        "import channels.webchat_outbox, channels.outbound_requests, channels.config\n"
        "print('channels.app' in sys.modules)\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("first", ["channels.app", "channels.config", "channels.keys",
                                   "channels.wechat.config", "channels.sms.config",
                                   "channels.sms", "channels.wechat", "channels.webchat",
                                   "channels.delivery", "channels.webchat_outbox",
                                   "channels.outbound_requests", "channels.__main__"])
def test_any_module_can_be_imported_first(first):
    done = run_python(f"import {first}\nimport channels.app\n")
    assert done.returncode == 0, done.stderr

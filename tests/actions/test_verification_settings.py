"""Verification settings from the environment: defaults, the SMS switch, refusals."""
import pytest

from actions.settings import SettingsError, VerificationSettings
from integrations.customer_store import Limit, VerificationLimits


def test_defaults_are_the_documented_limits():
    settings = VerificationSettings.from_env({})
    assert settings.sms_codes is False
    assert settings.limits == VerificationLimits()
    limits = settings.limits
    assert limits.conversation == Limit(5, 1800, 1800, 86400)
    assert limits.account == Limit(10, 1800, 1800, 86400)
    assert limits.address == Limit(20, 3600, 1800, 86400)
    assert limits.service == Limit(200, 3600, 1800, 1800)
    assert [limits.codes_per_account.max_count, limits.codes_per_conversation.max_count,
            limits.codes_per_address.max_count] == [5, 3, 10]
    assert limits.web_idle_seconds == 30 * 86400


@pytest.mark.parametrize("env, expected", [
    ({"SMS_PROVIDER": "aliyun"}, True),
    ({"SMS_PROVIDER": "aliyun", "VERIFICATION_SMS": "off"}, False),
    ({"VERIFICATION_SMS": "on"}, True),
    ({"VERIFICATION_SMS": "auto"}, False),
])
def test_sms_codes_follow_the_sms_channel_unless_set(env, expected):
    assert VerificationSettings.from_env(env).sms_codes is expected


def test_variables_set_every_limit():
    limits = VerificationSettings.from_env({
        "VERIFY_MAX_FAILURES_CONVERSATION": "3", "VERIFY_MAX_FAILURES_ACCOUNT": "6",
        "VERIFY_MAX_FAILURES_ADDRESS": "12", "VERIFY_MAX_FAILURES_SERVICE": "50",
        "VERIFY_LOCK_MINUTES": "10", "VERIFY_MAX_LOCK_HOURS": "2",
        "VERIFY_CODES_PER_HOUR_ACCOUNT": "4", "VERIFY_CODES_PER_HOUR_CONVERSATION": "2",
        "VERIFY_CODES_PER_HOUR_ADDRESS": "8", "WEB_BINDING_IDLE_DAYS": "7",
    }).limits
    assert limits.conversation == Limit(3, 600, 600, 7200)
    assert limits.account == Limit(6, 600, 600, 7200)
    assert limits.address == Limit(12, 3600, 600, 7200)
    assert limits.service == Limit(50, 3600, 600, 600)
    assert limits.codes_per_account == Limit(4, 3600, 3600, 3600)
    assert limits.codes_per_conversation.max_count == 2
    assert limits.codes_per_address.max_count == 8
    assert limits.web_idle_seconds == 7 * 86400


@pytest.mark.parametrize("env, names", [
    ({"VERIFICATION_SMS": "maybe"}, "VERIFICATION_SMS"),
    ({"VERIFY_MAX_FAILURES_ACCOUNT": "ten"}, "VERIFY_MAX_FAILURES_ACCOUNT"),
    ({"VERIFY_MAX_FAILURES_CONVERSATION": "0"}, "VERIFY_MAX_FAILURES_CONVERSATION"),
    ({"WEB_BINDING_IDLE_DAYS": "-1"}, "WEB_BINDING_IDLE_DAYS"),
    ({"VERIFY_LOCK_MINUTES": "180", "VERIFY_MAX_LOCK_HOURS": "1"}, "VERIFY_MAX_LOCK_HOURS"),
])
def test_bad_values_name_the_variable(env, names):
    with pytest.raises(SettingsError, match=names):
        VerificationSettings.from_env(env)


def test_the_action_server_refuses_to_start_on_a_bad_value():
    import os
    import subprocess

    from scripts.stack import RASA_PY, ROOT

    env = dict(os.environ, PYTHONPATH=str(ROOT), VERIFY_MAX_FAILURES_ACCOUNT="many")
    done = subprocess.run([str(RASA_PY), "-m", "actions", "--port", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    # one line (after the Rasa libraries' own import-time deprecation warnings), no traceback
    assert done.stderr.strip().splitlines()[-1] == (
        "action server configuration error: VERIFY_MAX_FAILURES_ACCOUNT must be a whole number, "
        "got 'many'")
    assert "Traceback" not in done.stderr

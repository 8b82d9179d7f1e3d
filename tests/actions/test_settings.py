"""Service commitments and payment methods: loading, checking, working-day arithmetic."""
import datetime as dt
from pathlib import Path

import pytest

from actions.settings import (
    Settings,
    SettingsError,
    add_working_days,
    working_days_between,
)

TZ = dt.timezone(dt.timedelta(hours=8))


def test_defaults_are_state_grid_ten_commitments():
    commitments = Settings.load().commitments
    assert commitments.repair_arrival_minutes == {"urban": 45, "rural": 90, "remote": 120}
    assert commitments.planned_outage_notice_days == 7
    assert commitments.connection_working_days["residential"] == 5
    assert commitments.complaint_ack_working_days == 1


def test_payment_methods_come_from_the_file(tmp_path: Path):
    methods = tmp_path / "methods.yml"
    methods.write_text(
        "payment_methods:\n  - name: 测试缴费\n    description: 测试说明\n    online: true\n",
        encoding="utf-8",
    )
    settings = Settings.load(payment_methods_file=methods)
    assert [m.name for m in settings.payment_methods] == ["测试缴费"]
    assert settings.payment_methods[0].online is True


def test_environment_names_the_files(tmp_path: Path, monkeypatch):
    commitments = tmp_path / "c.yml"
    commitments.write_text(
        "repair_arrival_minutes: {urban: 30, rural: 60, remote: 100}\n"
        "planned_outage_notice_days: 5\n"
        "connection_working_days: {residential: 3}\n"
        "complaint_ack_working_days: 1\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("SERVICE_COMMITMENTS_FILE", str(commitments))
    assert Settings.load().commitments.repair_arrival_minutes["urban"] == 30


@pytest.mark.parametrize(
    "text",
    [
        "repair_arrival_minutes: {urban: 45, rural: 90}\nplanned_outage_notice_days: 7\n"
        "connection_working_days: {residential: 5}\ncomplaint_ack_working_days: 1\n",
        "repair_arrival_minutes: {urban: 45, rural: 90, remote: 120}\nplanned_outage_notice_days: -7\n"
        "connection_working_days: {residential: 5}\ncomplaint_ack_working_days: 1\n",
        "repair_arrival_minutes: {urban: 45, rural: 90, remote: 120}\nplanned_outage_notice_days: 7\n"
        "connection_working_days: {residential: 5}\n",
        "- just a list\n",
    ],
)
def test_bad_commitments_are_refused(tmp_path: Path, text: str):
    path = tmp_path / "bad.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError):
        Settings.load(commitments_file=path)


def test_missing_file_is_refused(tmp_path: Path):
    with pytest.raises(SettingsError):
        Settings.load(commitments_file=tmp_path / "absent.yml")


def test_working_days_skip_weekends_and_national_day():
    # Tuesday 2026-09-29 + 2 working days: 9-30 (Wed), then 10-01..10-07 are the holiday → 10-08.
    start = dt.datetime(2026, 9, 29, 10, 30, tzinfo=TZ)
    assert add_working_days(start, 2) == dt.datetime(2026, 10, 8, 10, 30, tzinfo=TZ)


def test_working_days_count_make_up_days():
    # Sunday 2026-09-20 is an official make-up working day (调休).
    start = dt.datetime(2026, 9, 19, 9, 0, tzinfo=TZ)  # Saturday
    assert add_working_days(start, 1) == dt.datetime(2026, 9, 20, 9, 0, tzinfo=TZ)


def test_working_days_beyond_the_calendar_fall_back_to_weekdays():
    start = dt.datetime(2030, 1, 4, 9, 0, tzinfo=TZ)  # Friday, outside chinese_calendar's years
    assert add_working_days(start, 1) == dt.datetime(2030, 1, 7, 9, 0, tzinfo=TZ)


def test_working_days_between():
    assert working_days_between(dt.date(2026, 9, 29), dt.date(2026, 10, 8)) == 2
    assert working_days_between(dt.date(2026, 10, 8), dt.date(2026, 10, 8)) == 0
    assert working_days_between(dt.date(2026, 10, 9), dt.date(2026, 10, 8)) == 0

"""Local time and how replies say a moment."""
import datetime as dt

from actions.clock import as_local, describe_day, describe_moment, local_tz

TZ = dt.timezone(dt.timedelta(hours=8))
TODAY = dt.date(2026, 11, 23)


def test_days_close_to_today_are_named():
    assert describe_day(dt.datetime(2026, 11, 24, 8, tzinfo=TZ), TODAY) == "11月24日（明天）"
    assert describe_day(dt.datetime(2026, 11, 22, 8, tzinfo=TZ), TODAY) == "11月22日（昨天）"
    assert describe_day(dt.datetime(2026, 11, 30, 8, tzinfo=TZ), TODAY) == "11月30日"


def test_moments_are_said_in_local_time_with_the_year_when_another_year(monkeypatch):
    monkeypatch.setenv("POWERDESK_TIMEZONE", "Asia/Shanghai")
    utc = dt.datetime(2026, 11, 24, 10, 30, tzinfo=dt.timezone.utc)
    assert describe_moment(utc, TODAY) == "11月24日（明天）18:30"
    assert describe_moment(dt.datetime(2027, 1, 2, 9, 0, tzinfo=TZ), TODAY) == "2027年1月2日09:00"


def test_iso_strings_and_naive_times_become_local():
    assert as_local("2026-11-24T02:00:00Z") == dt.datetime(2026, 11, 24, 10, 0, tzinfo=TZ)
    assert as_local(dt.datetime(2026, 11, 24, 10, 0)).tzinfo == local_tz()
    assert as_local(None) is None and as_local("") is None

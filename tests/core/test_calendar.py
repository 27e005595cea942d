"""Bar times come from the exchange calendar: sessions, holidays, half days, UTC labels."""

from __future__ import annotations

import pandas as pd
import pytest

from foxlive_core.calendar import TradingCalendar, _xcal, _xcal_from, regular_session_minutes, to_utc
from foxlive_core.errors import DataError

XNYS5 = TradingCalendar("XNYS", 5)


def test_regular_session_has_78_five_minute_bars_labelled_by_close():
    times = XNYS5.bar_times("2025-03-03T00:00Z", "2025-03-03T23:59Z")  # a Monday, EST (UTC-5)
    assert len(times) == 78
    assert times[0] == pd.Timestamp("2025-03-03T14:35Z")  # 09:35 New York: the bar (09:30, 09:35]
    assert times[-1] == pd.Timestamp("2025-03-03T21:00Z")  # 16:00 New York
    assert str(times.tz) == "UTC"


def test_half_day_and_holiday():
    # 2025-11-27 is Thanksgiving (closed); 2025-11-28 closes at 13:00 New York (18:00 UTC).
    times = XNYS5.bar_times("2025-11-27T00:00Z", "2025-11-28T23:59Z")
    assert len(times) == 42  # 09:30-13:00 = 210 minutes = 42 bars
    assert times[-1] == pd.Timestamp("2025-11-28T18:00Z")


def test_daylight_saving_shift():
    summer = XNYS5.bar_times("2025-07-01T00:00Z", "2025-07-01T23:59Z")
    assert summer[0] == pd.Timestamp("2025-07-01T13:35Z")  # EDT is UTC-4


def test_bars_ending_at_crosses_sessions_and_weekends():
    times = XNYS5.bars_ending_at("2025-03-03T14:45Z", 5)  # Monday 09:45: 3 bars today, 2 from Friday
    assert list(times[-3:]) == [pd.Timestamp(f"2025-03-03T14:{m}Z") for m in (35, 40, 45)]
    assert list(times[:2]) == [pd.Timestamp("2025-02-28T20:55Z"), pd.Timestamp("2025-02-28T21:00Z")]


def test_daily_bars_and_round_the_clock():
    daily = TradingCalendar("XNYS", None)
    assert list(daily.bar_times("2025-11-26T00:00Z", "2025-11-29T00:00Z")) == [
        pd.Timestamp("2025-11-26T21:00Z"), pd.Timestamp("2025-11-28T18:00Z")]
    crypto = TradingCalendar("24/7", 60)
    assert len(crypto.bar_times("2025-01-04T00:00Z", "2025-01-05T23:59Z")) == 48  # weekends trade
    assert regular_session_minutes("XNYS") == 390
    assert daily.bar_seconds() == 390 * 60


def test_session_date_and_naive_times_refused():
    assert XNYS5.session_date("2025-03-03T21:00Z") == pd.Timestamp("2025-03-03")
    with pytest.raises(DataError, match="timezone-naive"):
        to_utc("2025-03-03 15:00")
    with pytest.raises(DataError, match="not inside any session"):
        XNYS5.session_date("2025-03-01T15:00Z")  # a Saturday


@pytest.mark.parametrize("code, minutes, zone, start, end", [
    ("XNYS", 5, "America/New_York", "2025-03-01", "2025-03-15"),  # the switch to summer time
    ("XNYS", 5, "America/New_York", "2025-11-24", "2025-12-02"),  # Thanksgiving and its half day
    ("XNYS", None, "America/New_York", "2024-12-20", "2025-01-10"),
    ("XNYS", 30, "America/New_York", "1994-12-20", "1995-01-10"),  # before the library's default range
    ("XLON", 5, "Europe/London", "2025-03-24", "2025-04-04"),
])
def test_the_session_of_each_bar_is_the_exchange_date_of_its_close(code, minutes, zone, start, end):
    # These exchanges' sessions lie within one local day: a bar's session is its close's local date.
    cal = TradingCalendar(code, minutes)
    times = cal.bar_times(f"{start}T00:00Z", f"{end}T23:59Z")
    expected = times.tz_convert(zone).tz_localize(None).normalize().to_numpy(dtype="datetime64[D]")
    assert len(times) > 10
    assert (cal.session_dates(times) == expected).all()
    for t in times[[0, len(times) // 2, -1]]:  # one bar alone, as a live cycle asks
        assert cal.session_dates(times[times == t])[0] == expected[times == t][0]


def test_sessions_before_the_default_range_come_from_an_extended_calendar():
    # exchange-calendars' default XNYS range starts 2006-12-04; 1995 must still have its real sessions.
    daily = TradingCalendar("XNYS", None)
    # 3 July 1995 closed early at 13:00 EDT (17:00Z), 4 July was a holiday, 5 July closed at 16:00 EDT
    assert list(daily.bar_times("1995-07-01T00:00Z", "1995-07-06T00:00Z")) == [
        pd.Timestamp("1995-07-03T17:00Z"), pd.Timestamp("1995-07-05T20:00Z")]
    # Tuesday 3 Jan 1995 at 09:45 EST: 3 bars today, 2 from Friday 30 Dec 1994 (2 Jan was the New Year holiday)
    times = XNYS5.bars_ending_at("1995-01-03T14:45Z", 5)
    assert list(times[:2]) == [pd.Timestamp("1994-12-30T20:55Z"), pd.Timestamp("1994-12-30T21:00Z")]
    assert XNYS5.session_date("1998-03-02T21:00Z") == pd.Timestamp("1998-03-02")


def test_one_cached_calendar_object_per_code_and_start():
    nineties = _xcal_from("XNYS", pd.Timestamp("1995-06-29"))
    assert nineties is _xcal_from("XNYS", pd.Timestamp("1999-12-31")) is _xcal("XNYS", "1990-01-01")
    assert nineties.first_session == pd.Timestamp("1990-01-02")
    assert _xcal_from("XNYS", pd.Timestamp("2024-01-02")) is _xcal("XNYS")  # inside the default range


def test_24_5_is_the_fx_week_rolling_at_17_new_york():
    fx = TradingCalendar("24/5", 60)
    # Friday 3 Jan to Monday 6 Jan 2025 (winter: 17:00 New York is 22:00Z)
    times = fx.bar_times("2025-01-03T00:30Z", "2025-01-06T23:59Z")
    # Friday's session (opened Thursday 22:00Z) has bars closing 01:00Z .. 22:00Z (22 of them); Monday's session
    # opens Sunday 22:00Z: bars closing Sunday 23:00Z, 24:00Z, then Monday 01:00Z .. 22:00Z, and Tuesday's first 23:00Z
    assert len(times) == 22 + 24 + 1
    assert times[21] == pd.Timestamp("2025-01-03T22:00Z") and times[22] == pd.Timestamp("2025-01-05T23:00Z")
    assert len(fx.bar_times("2025-01-03T22:01Z", "2025-01-05T22:59Z")) == 0  # nothing closes in the weekend
    assert list(fx.sessions("2025-01-03T12:00Z", "2025-01-07T12:00Z").index) == [
        pd.Timestamp(d) for d in ("2025-01-03", "2025-01-06", "2025-01-07")]
    # the week after the US daylight saving change (Sunday 9 Mar 2025): 17:00 New York is 21:00Z
    march = fx.sessions("2025-03-10T00:00Z", "2025-03-10T12:00Z")
    assert march["open"].iloc[0] == pd.Timestamp("2025-03-09T21:00Z")
    assert march["close"].iloc[0] == pd.Timestamp("2025-03-10T21:00Z")
    assert len(fx.bar_times("2025-03-09T21:00Z", "2025-03-10T21:00Z")) == 24
    assert fx.session_date("2025-01-05T23:00Z") == pd.Timestamp("2025-01-06")  # Sunday evening is Monday's FX day
    assert fx.tz == "America/New_York"
    # Christmas Day 2017, a Monday, is shut: Friday 22 Dec's session, then Tuesday 26 Dec's, opening Monday 22:00Z
    christmas = fx.sessions("2017-12-22T12:00Z", "2017-12-26T12:00Z")
    assert list(christmas.index) == [pd.Timestamp("2017-12-22"), pd.Timestamp("2017-12-26")]
    assert christmas["open"].iloc[1] == pd.Timestamp("2017-12-25T22:00Z")
    daily = TradingCalendar("24/5", None)
    assert list(daily.bar_times("2025-01-03T00:30Z", "2025-01-07T23:00Z")) == [
        pd.Timestamp("2025-01-03T22:00Z"), pd.Timestamp("2025-01-06T22:00Z"), pd.Timestamp("2025-01-07T22:00Z")]
"""Bar times come from the exchange calendar: sessions, holidays, half days, UTC labels."""

from __future__ import annotations

import pandas as pd
import pytest

from foxlive_core.calendar import TradingCalendar, regular_session_minutes, to_utc
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

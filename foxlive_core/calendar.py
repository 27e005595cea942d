"""Exchange sessions and bar times: the only place exchange time appears.

Bars are labelled by their **close** time (a 5-minute bar labelled 14:35 UTC
covers (14:30, 14:35]), so a cycle at time t may use every bar labelled <= t
and nothing later. All times returned are timezone-aware UTC
(``pandas.DatetimeIndex`` with tz UTC). Sessions, holidays and half days come
from ``exchange-calendars``; ``24/7`` is a round-the-clock calendar whose
sessions are UTC days.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from foxlive_core.errors import ConfigError, DataError

ROUND_THE_CLOCK = ("24/7", "24/5")


@functools.lru_cache(maxsize=None)
def _xcal(code: str):
    import exchange_calendars as xc

    with warnings.catch_warnings():
        # exchange-calendars 4.x uses a pandas API that pandas 3.1 deprecates; nothing for us to act on.
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        return xc.get_calendar(code)


def check_calendar_code(code: str, key: str = "market.calendar") -> None:
    """Raise ConfigError unless ``code`` names an exchange-calendars calendar."""
    import exchange_calendars as xc

    names = xc.get_calendar_names(include_aliases=True)
    if code not in names:
        close = [n for n in names if n.upper().startswith(code[:2].upper())][:8]
        raise ConfigError(
            f"{key}: {code!r} is not an exchange-calendars code; use e.g. XNYS, XLON, 24/7"
            + (f" (similar: {close})" if close else "")
        )


@functools.lru_cache(maxsize=None)
def regular_session_minutes(code: str) -> int:
    """Length in minutes of the calendar's most common session (390 for XNYS)."""
    if code in ROUND_THE_CLOCK:
        return 1440
    cal = _xcal(code)
    end = cal.last_session
    start = max(cal.first_session, end - pd.Timedelta(days=400))
    sessions = cal.sessions_in_range(start, end)
    minutes = ((cal.closes[sessions] - cal.opens[sessions]).dt.total_seconds() // 60).astype(int)
    return int(minutes.mode().iloc[0])


def to_utc(ts) -> pd.Timestamp:
    """A timezone-aware UTC Timestamp; naive input is refused (it has no defined zone)."""
    t = pd.Timestamp(ts)
    if t.tzinfo is None:
        raise DataError(f"timestamp {t!s} is timezone-naive; give it with a zone, e.g. '{t.isoformat()}+00:00'")
    return t.tz_convert("UTC")


@dataclass(frozen=True)
class TradingCalendar:
    """Bar close times of one exchange at one bar interval.

    ``interval_minutes`` None means one bar per session, labelled at the
    session close (daily data).
    """

    code: str
    interval_minutes: int | None

    @property
    def tz(self) -> str:
        return "UTC" if self.code in ROUND_THE_CLOCK else str(_xcal(self.code).tz)

    # -- sessions

    def sessions(self, start, end) -> pd.DataFrame:
        """Sessions whose close lies in [start, end]: index session date, columns open, close (UTC)."""
        start, end = to_utc(start), to_utc(end)
        if self.code in ROUND_THE_CLOCK:
            days = pd.date_range((start - pd.Timedelta(days=1)).floor("D"), end.ceil("D"), freq="D", tz="UTC")
            if self.code == "24/5":
                days = days[days.dayofweek < 5]
            frame = pd.DataFrame({"open": days, "close": days + pd.Timedelta(days=1)}, index=days.tz_localize(None))
        else:
            cal = _xcal(self.code)
            lo = max(cal.first_session, (start - pd.Timedelta(days=2)).tz_localize(None).normalize())
            hi = min(cal.last_session, (end + pd.Timedelta(days=2)).tz_localize(None).normalize())
            if lo > hi:
                raise DataError(
                    f"calendar {self.code}: [{start}, {end}] is outside the calendar's range "
                    f"[{cal.first_session.date()}, {cal.last_session.date()}]"
                )
            idx = cal.sessions_in_range(lo, hi)
            frame = pd.DataFrame({"open": cal.opens[idx], "close": cal.closes[idx]}, index=idx)
        frame = frame[(frame["close"] >= start) & (frame["open"] <= end)]
        return frame

    def session_date(self, ts) -> pd.Timestamp:
        """The session (exchange date, tz-naive) that a bar closing at ``ts`` belongs to."""
        t = to_utc(ts)
        s = self.sessions(t - pd.Timedelta(days=1), t + pd.Timedelta(days=1))
        hit = s[(s["open"] < t) & (s["close"] >= t)]
        if hit.empty:
            raise DataError(f"calendar {self.code}: {t} is not inside any session")
        return hit.index[0]

    # -- bars

    def bar_times(self, start, end) -> pd.DatetimeIndex:
        """Close times (UTC) of every bar with start <= close <= end, in order."""
        start, end = to_utc(start), to_utc(end)
        if end < start:
            raise DataError(f"bar window end {end} is before its start {start}")
        s = self.sessions(start, end)
        if s.empty:
            return pd.DatetimeIndex([], tz="UTC")
        opens = s["open"].to_numpy(dtype="datetime64[ns]")
        closes = s["close"].to_numpy(dtype="datetime64[ns]")
        if self.interval_minutes is None:
            times = closes
        else:
            step = np.timedelta64(self.interval_minutes, "m").astype("timedelta64[ns]")
            counts = ((closes - opens) // step).astype(np.int64)
            starts = np.repeat(opens, counts)
            k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + 1
            times = starts + k * step
        idx = pd.DatetimeIndex(times).tz_localize("UTC")
        return idx[(idx >= start) & (idx <= end)]

    def bars_ending_at(self, end, count: int) -> pd.DatetimeIndex:
        """The last ``count`` bar close times <= end (fewer only at the calendar's start)."""
        end = to_utc(end)
        minutes = self.interval_minutes or 1440
        span = pd.Timedelta(minutes=minutes * count)
        lookback = span * 2 + pd.Timedelta(days=7)
        while True:
            times = self.bar_times(end - lookback, end)
            if len(times) >= count or lookback > pd.Timedelta(days=3660):
                return times[-count:]
            lookback *= 2

    def latest_bar_at_or_before(self, ts) -> pd.Timestamp:
        """The newest bar close time <= ts."""
        times = self.bars_ending_at(ts, 1)
        if len(times) == 0:
            raise DataError(f"calendar {self.code}: no bar closes at or before {to_utc(ts)}")
        return times[-1]

    def is_bar_time(self, ts) -> bool:
        t = to_utc(ts)
        return bool(len(self.bar_times(t, t)))

    def bar_seconds(self) -> float:
        """Nominal length of one bar in seconds (one regular session for daily bars)."""
        if self.interval_minutes is None:
            return 60.0 * regular_session_minutes(self.code)
        return 60.0 * self.interval_minutes


def calendar_for(market_cfg) -> TradingCalendar:
    """The calendar of a :class:`foxlive_core.config.MarketConfig`."""
    return TradingCalendar(market_cfg.calendar, market_cfg.interval_minutes)

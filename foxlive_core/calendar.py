"""Exchange sessions and bar times: the only place exchange time appears.

Bars are labelled by their **close** time (a 5-minute bar labelled 14:35 UTC
covers (14:30, 14:35]), so a cycle at time t may use every bar labelled <= t
and nothing later. All times returned are timezone-aware UTC
(``pandas.DatetimeIndex`` with tz UTC). Sessions, holidays and half days come
from ``exchange-calendars``, extended back as far as a query asks (the
library's default range starts about 20 years ago, 2006-12-04 for XNYS).

Two round-the-clock calendars need no exchange:

- ``24/7`` (crypto): every UTC day is a session, 00:00Z to 24:00Z.
- ``24/5`` (FX): the interbank week. Monday to Friday are sessions, each
  from 17:00 New York the evening before to 17:00 New York (the FX day's roll),
  so the week opens Sunday 17:00 New York (22:00Z in winter, 21:00Z in summer)
  and closes Friday 17:00 New York, as FX data comes. Saturday and Sunday are
  no sessions: the weekend holds no bar, and the bar after Friday's last is
  Monday's session's first (Sunday evening). 25 December and 1 January are
  no sessions (the interbank market is shut). Daylight saving changes fall on
  weekends, so every session is 24 hours. Missing-bar filling works on bar
  rows, so it never reaches across the weekend.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from foxlive_core.errors import ConfigError, DataError

ROUND_THE_CLOCK = ("24/7", "24/5")
FX_ROLL_ZONE = "America/New_York"  # the FX day ends at 17:00 here
FX_ROLL_HOUR = 17


@functools.lru_cache(maxsize=None)
def _xcal(code: str, start: str | None = None):
    """The exchange-calendars calendar of ``code`` from ``start`` ('YYYY-MM-DD'; None: the library's default).

    One object per (code, start): building one takes ~0.4 s, and the calendar is asked on every bar.
    """
    import exchange_calendars as xc

    with warnings.catch_warnings():
        # exchange-calendars 4.x uses a pandas API that pandas 3.1 deprecates; nothing for us to act on.
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        return xc.get_calendar(code) if start is None else xc.get_calendar(code, start=start)


@functools.lru_cache(maxsize=None)
def _session_table(cal) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every session of the exchange-calendars object ``cal``: dates (datetime64[D]), opens and closes (datetime64[ns], UTC).

    Made once per calendar object: a live cycle asks for its bars' sessions every bar.
    """
    return (cal.sessions.to_numpy(dtype="datetime64[D]"), cal.opens.to_numpy(dtype="datetime64[ns]"),
            cal.closes.to_numpy(dtype="datetime64[ns]"))


def _xcal_from(code: str, first_day: pd.Timestamp):
    """A cached calendar of ``code`` whose sessions start on or before ``first_day`` (tz-naive date).

    Within the default range that is the default calendar; before it, one built from the start of
    ``first_day``'s decade (so a few objects serve any history), or from the earliest start the
    library allows for that exchange.
    """
    default = _xcal(code)
    if first_day >= default.first_session:
        return default
    start = pd.Timestamp(year=first_day.year // 10 * 10, month=1, day=1)
    bound = default.bound_min()
    if bound is not None:
        start = max(start, pd.Timestamp(bound).tz_localize(None).normalize())
    return _xcal(code, str(start.date()))


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


def _fx_sessions(start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Weekday FX sessions around [start, end] (UTC): index the session date, open 17:00 New York the day before, close 17:00 New York.

    25 December and 1 January are no sessions: the interbank market is shut, and the next session opens at 17:00
    New York on the holiday itself.
    """
    days = pd.date_range((start - pd.Timedelta(days=1)).tz_localize(None).floor("D"),
                         (end + pd.Timedelta(days=2)).tz_localize(None).ceil("D"), freq="D")
    closed = ((days.month == 12) & (days.day == 25)) | ((days.month == 1) & (days.day == 1))
    days = days[(days.day_of_week < 5) & ~closed]
    roll = pd.Timedelta(hours=FX_ROLL_HOUR)
    close = (days + roll).tz_localize(FX_ROLL_ZONE).tz_convert("UTC")
    open_ = (days - pd.Timedelta(days=1) + roll).tz_localize(FX_ROLL_ZONE).tz_convert("UTC")
    return pd.DataFrame({"open": open_, "close": close}, index=days)


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
        if self.code == "24/5":
            return FX_ROLL_ZONE
        return "UTC" if self.code == "24/7" else str(_xcal(self.code).tz)

    # -- sessions

    def sessions(self, start, end) -> pd.DataFrame:
        """Sessions whose close lies in [start, end]: index session date, columns open, close (UTC)."""
        start, end = to_utc(start), to_utc(end)
        if self.code == "24/7":
            days = pd.date_range((start - pd.Timedelta(days=1)).floor("D"), end.ceil("D"), freq="D", tz="UTC")
            frame = pd.DataFrame({"open": days, "close": days + pd.Timedelta(days=1)}, index=days.tz_localize(None))
        elif self.code == "24/5":
            frame = _fx_sessions(start, end)
        else:
            first_day = (start - pd.Timedelta(days=2)).tz_localize(None).normalize()
            cal = _xcal_from(self.code, first_day)
            lo = max(cal.first_session, first_day)
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
        return pd.Timestamp(self.session_dates(pd.DatetimeIndex([t]))[0])

    def session_dates(self, times: pd.DatetimeIndex) -> np.ndarray:
        """Session date (datetime64[D]) of each bar close in ``times`` (UTC, ascending), from one calendar lookup."""
        if len(times) == 0:
            return np.empty(0, dtype="datetime64[D]")
        times = pd.DatetimeIndex(times)
        if self.code in ROUND_THE_CLOCK:
            s = self.sessions(times[0] - pd.Timedelta(days=1), times[-1] + pd.Timedelta(days=1))
            dates = s.index.to_numpy(dtype="datetime64[D]")
            closes = s["close"].to_numpy(dtype="datetime64[ns]")
            opens = s["open"].to_numpy(dtype="datetime64[ns]")
        else:
            first_day = (times[0] - pd.Timedelta(days=2)).tz_convert("UTC").tz_localize(None).normalize()
            dates, opens, closes = _session_table(_xcal_from(self.code, first_day))
        t = times.tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[ns]")
        # A bar belongs to the first session closing at or after it, if that session has opened before it.
        i = np.searchsorted(closes, t, side="left")
        inside = i < len(closes)
        inside[inside] = opens[i[inside]] < t[inside]
        if not inside.all():
            bad = times[~inside][0]
            raise DataError(f"calendar {self.code}: {bad} is not inside any session")
        return dates[i]

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

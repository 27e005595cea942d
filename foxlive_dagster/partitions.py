"""Session partitions: one partition per exchange session, for the cycle assets and the end-of-day report.

Why sessions, and why a time-window definition:

- **A fast UI.** Two years of history are about 500 partitions. One partition per 5-minute bar made
  37,000 of them, and the Materialize dialog, the partition view and the asset event pages took 20 to
  50 s to open.
- **Every bar schedulable.** A live cycle materialises the partition of its bar's session, and the
  session in progress is a valid key from its first minute (``end_offset=1``), so the bar at the close
  is as schedulable as any other. (A bar's own window ended at the next session's open, so the
  close's partition was not yet valid when it closed.)
- **Time windows, not static or dynamic keys.** The set grows by itself as sessions pass, without a
  reload of the code location or a sensor adding keys, and the UI selects ranges by date.
- **Keys are session dates** (``YYYY-MM-DD``, the exchange's calendar date of the session). A
  partition's cycles are its session's bar closes (UTC) from the exchange calendar, never read from the
  window's clock times, so half days, sessions that open the evening before and daily bars
  (``bar_interval: 1d``, one cycle per session at its close) all map exactly.

The windows tick at midnight (exchange time) on the weekdays that hold sessions. Weekdays that are not
sessions (holidays) are excluded as far ahead as the exchange calendar knows them, so the keys are
exactly the calendar's sessions.
"""

from __future__ import annotations

import functools

import dagster as dg
import numpy as np
import pandas as pd

from foxlive_core.calendar import TradingCalendar, calendar_for, to_utc
from foxlive_core.config import FoxliveConfig

SESSION_FMT = "%Y-%m-%d"
# Holidays are excluded this far ahead of today (exchange calendars list about a year of them).
LOOKAHEAD = pd.Timedelta(days=400)


def cron_field(values) -> str:
    """One cron field matching exactly ``values`` (ints): ``a``, ``a-b``, ``a-b/step`` or a comma list."""
    v = sorted(set(int(x) for x in values))
    if len(v) == 1:
        return str(v[0])
    steps = set(np.diff(v).tolist())
    if len(steps) == 1 and len(v) > 2:
        step = steps.pop()
        return f"{v[0]}-{v[-1]}" + ("" if step == 1 else f"/{step}")
    return ",".join(map(str, v))


def cron_weekday(days: pd.Index) -> np.ndarray:
    """Cron's day-of-week numbers (Sunday 0) of pandas weekdays (Monday 0)."""
    return (np.asarray(days) + 1) % 7


def _sessions_ahead(cal: TradingCalendar, start: pd.Timestamp) -> pd.DatetimeIndex:
    """Session dates from ``start`` as far ahead as the calendar knows (about a year past today)."""
    end = pd.Timestamp.now(tz="UTC") + LOOKAHEAD
    sessions = cal.sessions(start, end).index
    # sessions() also returns the session closing at ``start`` (round-the-clock calendars close at midnight).
    return sessions[sessions >= start.tz_convert(cal.tz).tz_localize(None).normalize()]


@functools.lru_cache(maxsize=8)
def _session_partitions(code: str, start: str) -> dg.TimeWindowPartitionsDefinition:
    cal = TradingCalendar(code, None)
    first = pd.Timestamp(start).tz_localize(cal.tz).tz_convert("UTC")
    sessions = _sessions_ahead(cal, first)
    weekdays = sorted(set(sessions.day_of_week))
    every_day = pd.date_range(sessions[0], sessions[-1], freq="D")
    not_sessions = every_day[every_day.day_of_week.isin(weekdays)].difference(sessions)
    return dg.TimeWindowPartitionsDefinition(
        start=sessions[0].strftime(SESSION_FMT), fmt=SESSION_FMT, timezone=cal.tz,
        cron_schedule=f"0 0 * * {cron_field(cron_weekday(weekdays))}",
        end_offset=1,  # the session in progress is a valid partition: its bars are scheduled while it runs
        exclusions=[d.to_pydatetime() for d in not_sessions] or None,
    )


def session_partitions(cfg: FoxliveConfig) -> dg.TimeWindowPartitionsDefinition:
    """The session partitions of ``cfg``'s calendar from ``engine.partitions_start``."""
    return _session_partitions(cfg.market.calendar, cfg.engine.partitions_start)


def session_key(cfg: FoxliveConfig, bar_close) -> str:
    """The partition key of the session that the bar closing at ``bar_close`` belongs to."""
    return calendar_for(cfg.market).session_date(to_utc(bar_close)).strftime(SESSION_FMT)


def session_cycle_times(cfg: FoxliveConfig, first_key: str, last_key: str) -> pd.DatetimeIndex:
    """Bar close times (UTC) of every session from partition ``first_key`` through ``last_key``."""
    cal = calendar_for(cfg.market)
    first, last = pd.Timestamp(first_key), pd.Timestamp(last_key)
    # A window around the session dates in UTC that surely holds their opens and closes.
    sessions = cal.sessions(first.tz_localize("UTC") - pd.Timedelta(days=1), last.tz_localize("UTC") + pd.Timedelta(days=2))
    sessions = sessions[(sessions.index >= first) & (sessions.index <= last)]
    if sessions.empty:
        return pd.DatetimeIndex([], tz="UTC")
    # A bar closing at a session's open is the previous session's last (round-the-clock calendars).
    return cal.bar_times(sessions["open"].iloc[0] + pd.Timedelta(1, "ns"), sessions["close"].iloc[-1])

"""Cycle partitions: one time window per bar, on the exchange's session cron.

A partition's window [start, end) is one bar; its cycle runs at the bar's close,
``end``. The cron runs in the exchange's time zone over the regular session's
hours on weekdays; window starts outside real bars (before the open, after an
early close, holidays) are excluded, so the partition set is exactly the
calendar's bars.
"""

from __future__ import annotations

import functools

import dagster as dg
import numpy as np
import pandas as pd

from foxlive_core.calendar import TradingCalendar, calendar_for
from foxlive_core.config import FoxliveConfig

PARTITION_FMT = "%Y-%m-%d-%H:%M"


def _fx_exclusions(cal: TradingCalendar, start: pd.Timestamp, end: pd.Timestamp) -> list:
    """Window starts that the 24/5 cron leaves in but that start no bar, as datetimes in the calendar's zone.

    Those are the shut holidays (from 17:00 New York on their eve) and the Sunday mornings of daylight
    saving changes: Dagster does not apply a cron exclusion to the second pass through a repeated hour.
    """
    tz, m = cal.tz, cal.interval_minutes
    days = pd.date_range(start.tz_convert(tz).tz_localize(None).normalize(),
                         end.tz_convert(tz).tz_localize(None).normalize(), freq="D")
    shut = ((days.month == 12) & (days.day == 25)) | ((days.month == 1) & (days.day == 1))
    eve = ((days.month == 12) & (days.day == 24)) | ((days.month == 12) & (days.day == 31))
    midnight, noon = days.tz_localize(tz), (days + pd.Timedelta(hours=12)).tz_localize(tz)
    dst_sunday = (days.day_of_week == 6) & np.array([a.utcoffset() != b.utcoffset() for a, b in zip(midnight, noon)])
    excluded = []
    for day in days[shut | eve | dst_sunday]:
        lo, hi = pd.Timestamp(day, tz=tz), pd.Timestamp(day + pd.Timedelta(days=1), tz=tz)
        starts = pd.date_range(lo.tz_convert("UTC"), hi.tz_convert("UTC"), freq=f"{m}min", inclusive="left")
        bar_starts = cal.bar_times(starts[0] + pd.Timedelta(minutes=m), starts[-1] + pd.Timedelta(minutes=m))
        excluded.extend(starts.difference(bar_starts - pd.Timedelta(minutes=m)).tz_convert(tz).to_pydatetime())
    return excluded


def _cron_and_exclusions(cal: TradingCalendar, start: pd.Timestamp, end: pd.Timestamp):
    m = cal.interval_minutes
    tz = cal.tz
    if cal.code == "24/7":
        return f"*/{m} * * * *", []
    if cal.code == "24/5":
        # in New York time: the FX week opens Sunday 17:00 and closes Friday 17:00
        return f"*/{m} * * * 0-5", [f"*/{m} 0-16 * * 0", f"*/{m} 17-23 * * 5"] + _fx_exclusions(cal, start, end)
    sessions = cal.sessions(start, end)
    opens = sessions["open"].dt.tz_convert(tz)
    closes = sessions["close"].dt.tz_convert(tz)
    open_t = opens.dt.time.mode().iloc[0]
    close_t = closes.dt.time.mode().iloc[0]
    last_start = (pd.Timestamp.combine(pd.Timestamp("2000-01-03").date(), close_t) - pd.Timedelta(minutes=m)).time()
    cron = f"*/{m} {open_t.hour}-{last_start.hour} * * 1-5"
    exclusions: list = []
    if open_t.minute:
        exclusions.append(f"0-{open_t.minute - m}/{m} {open_t.hour} * * 1-5")
    if last_start.minute + m < 60:
        exclusions.append(f"{last_start.minute + m}-{60 - m}/{m} {last_start.hour} * * 1-5")
    # Weekday window starts of the cron that are not bars: holidays and the rest of half days.
    bar_starts = (cal.bar_times(start, end) - pd.Timedelta(minutes=m)).tz_convert(tz).tz_localize(None)
    days = pd.date_range(start.tz_convert(tz).tz_localize(None).normalize(), end.tz_convert(tz).tz_localize(None).normalize(), freq="D")
    weekdays = days[days.day_of_week < 5].to_numpy()
    offsets = pd.timedelta_range(
        pd.Timedelta(hours=open_t.hour, minutes=open_t.minute), pd.Timedelta(hours=last_start.hour, minutes=last_start.minute),
        freq=f"{m}min",
    ).to_numpy()
    cron_starts = pd.DatetimeIndex((weekdays[:, None] + offsets[None, :]).ravel())
    missing = cron_starts.difference(bar_starts)
    exclusions.extend(missing.to_pydatetime().tolist())
    return cron, exclusions


@functools.lru_cache(maxsize=8)
def _cycle_partitions(code: str, interval: int, start: str, tz: str) -> dg.TimeWindowPartitionsDefinition:
    cal = TradingCalendar(code, interval)
    first = pd.Timestamp(start, tz=tz)
    # Exclusions are listed up to a month ahead: the partition set only reaches the present.
    end = pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=31)
    cron, exclusions = _cron_and_exclusions(cal, first.tz_convert("UTC"), end)
    first_bar = cal.bar_times(first.tz_convert("UTC"), first.tz_convert("UTC") + pd.Timedelta(days=10))[0]
    start_key = (first_bar - pd.Timedelta(minutes=interval)).tz_convert(tz).strftime(PARTITION_FMT)
    return dg.TimeWindowPartitionsDefinition(
        start=start_key, fmt=PARTITION_FMT, cron_schedule=cron, timezone=tz, exclusions=exclusions or None
    )


def cycle_partitions(cfg: FoxliveConfig) -> dg.TimeWindowPartitionsDefinition:
    """The cycle partitions of ``cfg``'s calendar and bar interval (intraday bars)."""
    cal = calendar_for(cfg.market)
    if cal.interval_minutes is None:
        raise ValueError("cycle partitions need an intraday bar interval; daily bars use one partition per session")
    return _cycle_partitions(cal.code, cal.interval_minutes, cfg.engine.partitions_start, cal.tz)


def cycle_times_for_window(cfg: FoxliveConfig, window: dg.TimeWindow) -> pd.DatetimeIndex:
    """The bar close times (UTC) a partition window or range covers: window ends of its bars."""
    cal = calendar_for(cfg.market)
    start = pd.Timestamp(window.start).tz_convert("UTC") + pd.Timedelta(minutes=cal.interval_minutes)
    end = pd.Timestamp(window.end).tz_convert("UTC")
    return cal.bar_times(start, end)


def partition_key_for_bar(cfg: FoxliveConfig, bar_close) -> str:
    """The partition whose window ends at ``bar_close``."""
    cal = calendar_for(cfg.market)
    start = pd.Timestamp(bar_close).tz_convert(cal.tz) - pd.Timedelta(minutes=cal.interval_minutes)
    return start.strftime(PARTITION_FMT)

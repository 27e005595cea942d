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
import pandas as pd

from foxlive_core.calendar import ROUND_THE_CLOCK, TradingCalendar, calendar_for
from foxlive_core.config import FoxliveConfig

PARTITION_FMT = "%Y-%m-%d-%H:%M"


def _cron_and_exclusions(cal: TradingCalendar, start: pd.Timestamp, end: pd.Timestamp):
    m = cal.interval_minutes
    tz = cal.tz
    if cal.code in ROUND_THE_CLOCK:
        days = "*" if cal.code == "24/7" else "1-5"
        return f"*/{m} * * * {days}", []
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

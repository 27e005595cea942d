"""Schedules: a cycle at each real bar close, skips outside sessions and while halted; EOD after each close; retraining."""

from __future__ import annotations


import dagster as dg
import pandas as pd
import pytest
from dagster._utils.schedules import schedule_execution_time_iterator

from foxlive_core.calendar import calendar_for
from foxlive_dagster.kill_switch import BAR_TAG, BOOK_TAG
from foxlive_dagster.schedules import crons_for
from tests.dagster.conftest import B1

ET = "America/New_York"


def _schedule(env, name: str):
    return next(s for s in env.defs.schedules if s.name == name)


def _tick(env, name: str, local_time: str):
    when = pd.Timestamp(local_time, tz=ET).to_pydatetime()
    with dg.instance_for_test() as instance:
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=when,
                                       resources=env.resources) as context:
            return _schedule(env, name)(context)


def _ticks(env, name: str, start: str, end: str) -> pd.DatetimeIndex:
    """Every tick of schedule ``name`` in [start, end) exchange time, as the daemon would fire them."""
    schedule = _schedule(env, name)
    stop = pd.Timestamp(end, tz=ET)
    out = []
    for t in schedule_execution_time_iterator(pd.Timestamp(start, tz=ET).timestamp(), schedule.cron_schedule,
                                              schedule.execution_timezone):
        if t >= stop:
            break
        out.append(pd.Timestamp(t).tz_convert("UTC"))
    return pd.DatetimeIndex(out)


def _halt(env, reason="operator says stop"):
    store = env.store()
    store.create_book(env.cfg.book, env.cfg.broker.starting_cash)
    assert store.halt(env.cfg.book, reason, "pytest")


def test_crons_tick_at_exactly_the_given_clock_times():
    local = pd.DatetimeIndex(["2025-05-05 09:35", "2025-05-05 09:40", "2025-05-05 10:00", "2025-05-06 10:00",
                              "2025-05-10 00:00"], tz=ET)
    # Monday 09:35/09:40, Monday and Tuesday 10:00, Saturday 00:00 (cron weekdays: Sunday 0).
    assert crons_for(local) == ["0 0 * * 6", "0 10 * * 1,2", "35,40 9 * * 1"]


@pytest.mark.parametrize("month, sessions, half_days, skipped", [
    ("2025-05", 21, 0, {"2025-05-26": 78}),                      # Memorial Day ticks (a Monday) and skips
    ("2025-07", 22, 1, {"2025-07-04": 78, "2025-07-03": 36}),    # Independence Day; 13:05 .. 16:00 of the half day
    ("2025-03", 21, 0, {}),                                       # DST starts on 9 March: the same exchange times
])
def test_the_trading_schedule_ticks_at_every_bar_close_and_few_others(env, month, sessions, half_days, skipped):
    cal = calendar_for(env.cfg.market)
    start = pd.Timestamp(f"{month}-01", tz=ET)
    end = start + pd.offsets.MonthBegin(1)
    ticks = _ticks(env, "trading_cycle_schedule", str(start.date()), str(end.date()))
    bars = cal.bar_times(start, end)
    assert len(bars) == (sessions - half_days) * 78 + half_days * 42
    assert set(bars) <= set(ticks)  # every bar close is a tick, the last of each session included
    extra = ticks.difference(bars).tz_convert(ET)
    assert pd.Series(extra.date.astype(str)).value_counts().to_dict() == skipped


@pytest.mark.parametrize("local, session", [
    ("2025-05-01 09:35", "2025-05-01"),   # the first bar of a session
    ("2025-05-01 12:00", "2025-05-01"),
    ("2025-05-01 16:00", "2025-05-01"),   # the close: the last bar is schedulable
    ("2025-07-03 13:00", "2025-07-03"),   # the close of a half day
    ("2025-03-10 09:35", "2025-03-10"),   # the first session after the DST change
])
def test_trading_schedule_requests_the_bar_closing_now_in_its_session_partition(env, local, session):
    request = _tick(env, "trading_cycle_schedule", local)
    assert isinstance(request, dg.RunRequest), request
    bar = pd.Timestamp(local, tz=ET).tz_convert("UTC").isoformat()
    assert request.partition_key == session
    assert request.run_config == {"ops": {"market_bars": {"config": {"bar_close": bar}}}}
    assert request.tags == {BOOK_TAG: env.cfg.book, BAR_TAG: bar}
    assert request.run_key == f"{env.cfg.book}:{bar}"
    # The session is a valid partition while it is in progress (the request is made at the bar close).
    parts = env.job("trading_cycle_job").partitions_def
    assert session in parts.get_partition_keys(current_time=pd.Timestamp(local, tz=ET).to_pydatetime())


@pytest.mark.parametrize("local", [
    "2025-05-01 09:30",   # the open: no bar closes yet
    "2025-05-01 16:05",   # after the close
    "2025-05-01 03:00",   # night
    "2025-05-03 10:00",   # Saturday
    "2025-07-04 10:00",   # Independence Day
    "2025-07-03 13:05",   # after a half day's close
])
def test_trading_schedule_skips_outside_the_session(env, local):
    result = _tick(env, "trading_cycle_schedule", local)
    assert isinstance(result, dg.SkipReason), result
    assert result.skip_message.startswith("market closed: no 5m bar of XNYS closes at")
    assert pd.Timestamp(local).strftime("%Y-%m-%d %H:%M") in result.skip_message  # said in exchange time


def test_trading_schedule_skips_while_the_book_is_halted(env):
    _halt(env, "drawdown review")
    result = _tick(env, "trading_cycle_schedule", "2025-05-01 10:00")
    assert isinstance(result, dg.SkipReason)
    assert "halted" in result.skip_message and "drawdown review" in result.skip_message
    assert env.store().halt_status(env.cfg.book) == (True, "drawdown review")  # a skip never clears it


def test_trading_schedule_skips_a_cycle_already_run(env, instance):
    assert env.live_cycle(instance, B1).success
    result = _tick(env, "trading_cycle_schedule", "2025-05-01 09:35")
    assert isinstance(result, dg.SkipReason) and "already ran" in result.skip_message
    assert isinstance(_tick(env, "trading_cycle_schedule", "2025-05-01 09:40"), dg.RunRequest)


def test_end_of_day_schedule_reports_each_session_after_its_real_close(env):
    assert _schedule(env, "end_of_day_schedule").cron_schedule == ["30 13 * * 3-5", "30 16 * * 1-5"]
    request = _tick(env, "end_of_day_schedule", "2025-05-01 16:30")
    assert isinstance(request, dg.RunRequest) and request.partition_key == "2025-05-01"
    assert request.run_key == "eod:2025-05-01"
    assert env.job("end_of_day_job").partitions_def.has_partition_key("2025-05-01")
    half_day = _tick(env, "end_of_day_schedule", "2025-11-28 13:30")  # closed at 13:00
    assert isinstance(half_day, dg.RunRequest) and half_day.partition_key == "2025-11-28"
    for local in ("2025-11-28 16:30", "2025-05-01 13:30", "2025-07-04 16:30"):  # no session closed 30 min before
        skipped = _tick(env, "end_of_day_schedule", local)
        assert isinstance(skipped, dg.SkipReason) and "not a session, or it closed at another time" in skipped.skip_message
    # Every schedule skips while the book is halted (the report can still be materialised by hand).
    _halt(env, "end of day review")
    halted = _tick(env, "end_of_day_schedule", "2025-05-02 16:30")
    assert isinstance(halted, dg.SkipReason) and "end of day review" in halted.skip_message


def test_retraining_schedule_trains_on_the_bars_closed_by_its_tick(env):
    request = _tick(env, "weekly_retraining_schedule", "2025-05-03 06:00")
    assert isinstance(request, dg.RunRequest) and request.run_key == "retrain:2025-05-03"
    # Friday's close, 16:00 ET: never bars after the tick (a simulated market serves the future too).
    assert request.run_config == {"ops": {"trained_models": {"config": {"end": "2025-05-02T20:00:00+00:00"}}}}
    assert _schedule(env, "weekly_retraining_schedule").job_name == "training_job"
    _halt(env, "bad fills")
    skipped = _tick(env, "weekly_retraining_schedule", "2025-05-10 06:00")
    assert isinstance(skipped, dg.SkipReason) and "bad fills" in skipped.skip_message

"""Schedules: a trading cycle at every bar close, the end-of-day report after each close, weekly retraining.

The crons are drawn from the exchange calendar: they tick at exactly the
exchange-time clock times and weekdays at which the calendar's bars close (for
XNYS 5-minute bars: 09:35 through 16:00, Monday to Friday; 78 ticks a regular
session), and the end-of-day report 30 minutes after each session's real close
(16:30, and 13:30 on half days). Each tick still asks the calendar: a tick that
is not a real bar close (a holiday, the rest of a half day) skips with its
reason, as does every tick while the book is halted.
"""


import dagster as dg
import pandas as pd

from foxlive_core.calendar import calendar_for, to_utc
from foxlive_core.config import FoxliveConfig
from foxlive_dagster.jobs import end_of_day_job, trading_cycle_job
from foxlive_dagster.kill_switch import BAR_TAG, BOOK_TAG
from foxlive_dagster.partitions import LOOKAHEAD, cron_field, cron_weekday, session_key
from foxlive_dagster.resources import FoxliveConfigResource, StateStoreResource

EOD_DELAY = pd.Timedelta(minutes=30)


def crons_for(local: pd.DatetimeIndex) -> list[str]:
    """Cron strings that tick at exactly the (weekday, hour, minute) combinations of ``local`` times.

    Minutes are grouped per (weekday, hour), then hours sharing a minute set and weekdays sharing both,
    so a regular session is a few strings (XNYS 5-minute bars: ``35-55/5 9``, ``0-55/5 10-15``, ``0 16``).
    """
    frame = pd.DataFrame({"dow": cron_weekday(local.day_of_week), "hour": local.hour, "minute": local.minute})
    minutes = frame.drop_duplicates().groupby(["dow", "hour"], sort=False)["minute"].agg(frozenset)
    days = minutes.reset_index().groupby(["hour", "minute"], sort=False)["dow"].agg(frozenset)
    hours = days.reset_index().groupby(["minute", "dow"], sort=False)["hour"].agg(list)
    return sorted(f"{cron_field(m)} {cron_field(h)} * * {cron_field(d)}" for (m, d), h in hours.items())


def _calendar_times(cfg: FoxliveConfig) -> tuple[pd.DatetimeIndex, pd.DataFrame]:
    """Every bar close and every session from ``engine.partitions_start`` as far ahead as the calendar knows."""
    cal = calendar_for(cfg.market)
    start = pd.Timestamp(cfg.engine.partitions_start).tz_localize(cal.tz).tz_convert("UTC")
    end = pd.Timestamp.now(tz="UTC") + LOOKAHEAD
    return cal.bar_times(start, end), cal.sessions(start, end)


def bar_close_crons(cfg: FoxliveConfig) -> list[str]:
    """The trading schedule's crons (exchange time): every clock time at which a bar of the calendar closes."""
    bars, _ = _calendar_times(cfg)
    return crons_for(bars.tz_convert(calendar_for(cfg.market).tz))


def end_of_day_crons(cfg: FoxliveConfig) -> list[str]:
    """The end-of-day schedule's crons: ``EOD_DELAY`` after every clock time at which a session closes."""
    _, sessions = _calendar_times(cfg)
    return crons_for(pd.DatetimeIndex(sessions["close"] + EOD_DELAY).tz_convert(calendar_for(cfg.market).tz))


def _halted(cfg: FoxliveConfig, state: StateStoreResource) -> str:
    halted, reason = state.get().halt_status(cfg.book)
    return reason if halted else ""


def build_schedules(cfg: FoxliveConfig) -> list:
    cal = calendar_for(cfg.market)

    def local(t: pd.Timestamp) -> str:
        return t.tz_convert(cal.tz).strftime("%Y-%m-%d %H:%M %Z")

    @dg.schedule(
        name="trading_cycle_schedule",
        job=trading_cycle_job,
        cron_schedule=bar_close_crons(cfg),
        execution_timezone=cal.tz,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="A cycle of the live book at every bar close of the exchange calendar (half days included); "
        "skips ticks that are no bar close and while the book is halted.",
    )
    def trading_cycle_schedule(context: dg.ScheduleEvaluationContext, foxlive: FoxliveConfigResource,
                               state: StateStoreResource):
        cfg = foxlive.get()
        tick = to_utc(context.scheduled_execution_time)
        if not cal.is_bar_time(tick):
            return dg.SkipReason(f"market closed: no {cfg.market.bar_interval} bar of {cal.code} closes at {local(tick)}")
        reason = _halted(cfg, state)
        if reason:
            return dg.SkipReason(f"book {cfg.book!r} is halted: {reason}; resume it with the resume_book job")
        if state.get().cycle_done(cfg.book, tick):
            return dg.SkipReason(f"the cycle at {tick} already ran for book {cfg.book!r}")
        bar = tick.isoformat()
        return dg.RunRequest(
            run_key=f"{cfg.book}:{bar}",
            partition_key=session_key(cfg, tick),
            run_config={"ops": {"market_bars": {"config": {"bar_close": bar}}}},
            tags={BOOK_TAG: cfg.book, BAR_TAG: bar},
        )

    @dg.schedule(
        name="end_of_day_schedule",
        job=end_of_day_job,
        cron_schedule=end_of_day_crons(cfg),
        execution_timezone=cal.tz,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="The live book's end-of-day report 30 minutes after each session's close (half days "
        "included); skips while the book is halted, like every schedule (materialise the report by hand to "
        "review a halted day).",
    )
    def end_of_day_schedule(context: dg.ScheduleEvaluationContext, foxlive: FoxliveConfigResource,
                            state: StateStoreResource):
        cfg = foxlive.get()
        tick = to_utc(context.scheduled_execution_time)
        sessions = cal.sessions(tick - pd.Timedelta(days=1), tick)
        closed = sessions[sessions["close"] == tick - EOD_DELAY]
        if closed.empty:
            return dg.SkipReason(f"no session of {cal.code} closed at {local(tick - EOD_DELAY)}: not a session, "
                                 "or it closed at another time")
        reason = _halted(cfg, state)
        if reason:
            return dg.SkipReason(f"book {cfg.book!r} is halted: {reason}; the report waits for a resume")
        day = closed.index[-1].strftime("%Y-%m-%d")
        return dg.RunRequest(run_key=f"eod:{day}", partition_key=day)

    @dg.schedule(
        name="weekly_retraining_schedule",
        job_name="training_job",
        cron_schedule="0 6 * * 6",
        execution_timezone=cal.tz,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Retrain every horizon's models each Saturday morning on the bars closed by then, and "
        "activate the new run.",
    )
    def weekly_retraining_schedule(context: dg.ScheduleEvaluationContext, foxlive: FoxliveConfigResource,
                                   state: StateStoreResource):
        cfg = foxlive.get()
        reason = _halted(cfg, state)
        if reason:
            return dg.SkipReason(f"book {cfg.book!r} is halted: {reason}; retraining waits for a resume")
        tick = to_utc(context.scheduled_execution_time)
        # Training ends at the newest closed bar: a simulated market has bars beyond the present.
        end = cal.latest_bar_at_or_before(tick).isoformat()
        return dg.RunRequest(run_key=f"retrain:{tick.tz_convert(cal.tz).date()}",
                             run_config={"ops": {"trained_models": {"config": {"end": end}}}})

    return [trading_cycle_schedule, end_of_day_schedule, weekly_retraining_schedule]

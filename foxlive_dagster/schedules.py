"""Schedules: trading cycles at every bar close, the end-of-day report, weekly retraining.

Crons run in the exchange's time zone. Each tick checks the exchange calendar
(weekends, holidays, half days) and the book's halt flag, and skips with a
reason when it must not act.
"""


import dagster as dg
import pandas as pd

from foxlive_core.calendar import calendar_for
from foxlive_core.config import FoxliveConfig
from foxlive_dagster.jobs import end_of_day_job, trading_cycle_job, training_job
from foxlive_dagster.kill_switch import BOOK_TAG
from foxlive_dagster.partitions import partition_key_for_bar
from foxlive_dagster.resources import FoxliveConfigResource, StateStoreResource


def _halted(cfg: FoxliveConfig, state: StateStoreResource) -> str:
    halted, reason = state.get().halt_status(cfg.book)
    return reason if halted else ""


#: Days of the week (cron, in the calendar's zone) that hold bars; exchanges trade Monday to Friday.
CRON_DAYS = {"24/7": "*", "24/5": "0-5"}  # the FX week opens Sunday 17:00 New York


def build_schedules(cfg: FoxliveConfig) -> list:
    cal = calendar_for(cfg.market)
    minutes = cal.interval_minutes

    @dg.schedule(
        name="trading_cycle_schedule",
        job=trading_cycle_job,
        cron_schedule=f"*/{minutes} * * * {CRON_DAYS.get(cal.code, '1-5')}",
        execution_timezone=cal.tz,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="A cycle of the live book at every bar close of the exchange calendar; skips outside sessions "
        "and while the book is halted.",
    )
    def trading_cycle_schedule(context: dg.ScheduleEvaluationContext, foxlive: FoxliveConfigResource,
                               state: StateStoreResource):
        cfg = foxlive.get()
        tick = pd.Timestamp(context.scheduled_execution_time).tz_convert("UTC")
        if not cal.is_bar_time(tick):
            return dg.SkipReason(f"no {cfg.market.bar_interval} bar of {cal.code} closes at {tick} (market closed)")
        reason = _halted(cfg, state)
        if reason:
            return dg.SkipReason(f"book {cfg.book!r} is halted: {reason}; resume it with the resume_book job")
        if state.get().cycle_done(cfg.book, tick):
            return dg.SkipReason(f"the cycle at {tick} already ran for book {cfg.book!r}")
        return dg.RunRequest(
            run_key=f"{cfg.book}:{tick.isoformat()}",
            partition_key=partition_key_for_bar(cfg, tick),
            tags={BOOK_TAG: cfg.book},
        )

    @dg.schedule(
        name="end_of_day_schedule",
        job=end_of_day_job,
        cron_schedule="30 16 * * 1-5",
        execution_timezone=cal.tz,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="The live book's end-of-day report after the close (half days included); skips while the book "
        "is halted, like every schedule (materialise the report by hand to review a halted day).",
    )
    def end_of_day_schedule(context: dg.ScheduleEvaluationContext, foxlive: FoxliveConfigResource,
                            state: StateStoreResource):
        cfg = foxlive.get()
        tick = pd.Timestamp(context.scheduled_execution_time)
        day = tick.tz_convert(cal.tz).normalize()
        if cal.sessions(day.tz_convert("UTC"), (day + pd.Timedelta(hours=23)).tz_convert("UTC")).empty:
            return dg.SkipReason(f"{day.date()} is not a session of {cal.code}")
        reason = _halted(cfg, state)
        if reason:
            return dg.SkipReason(f"book {cfg.book!r} is halted: {reason}; the report waits for a resume")
        return dg.RunRequest(run_key=f"eod:{day.date()}", partition_key=day.strftime("%Y-%m-%d"))

    @dg.schedule(
        name="weekly_retraining_schedule",
        job=training_job,
        cron_schedule="0 6 * * 6",
        execution_timezone=cal.tz,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Retrain every horizon's models each Saturday morning and activate the new run.",
    )
    def weekly_retraining_schedule(context: dg.ScheduleEvaluationContext, foxlive: FoxliveConfigResource,
                                   state: StateStoreResource):
        cfg = foxlive.get()
        reason = _halted(cfg, state)
        if reason:
            return dg.SkipReason(f"book {cfg.book!r} is halted: {reason}; retraining waits for a resume")
        return dg.RunRequest(run_key=f"retrain:{pd.Timestamp(context.scheduled_execution_time).date()}")

    return [trading_cycle_schedule, end_of_day_schedule, weekly_retraining_schedule]

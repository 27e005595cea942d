"""Schedules: a cycle at each bar close in a session, skips outside sessions and while halted; EOD and retraining."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from foxlive_dagster.kill_switch import BOOK_TAG

ET = "America/New_York"


def _tick(env, name: str, local_time: str):
    schedule = next(s for s in env.defs.schedules if s.name == name)
    when = pd.Timestamp(local_time, tz=ET).to_pydatetime()
    with dg.instance_for_test() as instance:
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=when,
                                       resources=env.resources) as context:
            return schedule(context)


def _halt(env, reason="operator says stop"):
    store = env.store()
    store.create_book(env.cfg.book, env.cfg.broker.starting_cash)
    assert store.halt(env.cfg.book, reason, "pytest")


@pytest.mark.parametrize("local, key", [
    ("2025-05-01 09:35", "2025-05-01-09:30"),   # the first bar of a session
    ("2025-05-01 12:00", "2025-05-01-11:55"),
    ("2025-05-01 16:00", "2025-05-01-15:55"),   # the close
    ("2025-07-03 13:00", "2025-07-03-12:55"),   # the close of a half day
    ("2025-03-10 09:35", "2025-03-10-09:30"),   # the first session after the DST change
])
def test_trading_schedule_requests_the_partition_of_the_bar_closing_now(env, local, key):
    request = _tick(env, "trading_cycle_schedule", local)
    assert isinstance(request, dg.RunRequest), request
    assert request.partition_key == key
    assert request.tags[BOOK_TAG] == env.cfg.book
    assert env.cfg.book in request.run_key
    assert env.job("trading_cycle_job").partitions_def.has_partition_key(key)


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
    assert "closed" in result.skip_message


def test_trading_schedule_skips_while_the_book_is_halted(env):
    _halt(env, "drawdown review")
    result = _tick(env, "trading_cycle_schedule", "2025-05-01 10:00")
    assert isinstance(result, dg.SkipReason)
    assert "halted" in result.skip_message and "drawdown review" in result.skip_message
    assert env.store().halt_status(env.cfg.book) == (True, "drawdown review")  # a skip never clears it


def test_trading_schedule_skips_a_cycle_already_run(env, instance):
    from tests.dagster.conftest import P1

    assert env.materialize_cycle(instance, P1).success
    result = _tick(env, "trading_cycle_schedule", "2025-05-01 09:35")
    assert isinstance(result, dg.SkipReason) and "already ran" in result.skip_message
    assert isinstance(_tick(env, "trading_cycle_schedule", "2025-05-01 09:40"), dg.RunRequest)


def test_end_of_day_schedule(env):
    request = _tick(env, "end_of_day_schedule", "2025-05-01 16:30")
    assert isinstance(request, dg.RunRequest) and request.partition_key == "2025-05-01"
    assert env.job("end_of_day_job").partitions_def.has_partition_key("2025-05-01")
    half_day = _tick(env, "end_of_day_schedule", "2025-11-28 16:30")
    assert isinstance(half_day, dg.RunRequest) and half_day.partition_key == "2025-11-28"
    holiday = _tick(env, "end_of_day_schedule", "2025-07-04 16:30")
    assert isinstance(holiday, dg.SkipReason) and "not a session" in holiday.skip_message
    # Every schedule skips while the book is halted (the report can still be materialised by hand).
    _halt(env, "end of day review")
    halted = _tick(env, "end_of_day_schedule", "2025-05-02 16:30")
    assert isinstance(halted, dg.SkipReason) and "end of day review" in halted.skip_message


def test_retraining_schedule(env):
    request = _tick(env, "weekly_retraining_schedule", "2025-05-03 06:00")
    assert isinstance(request, dg.RunRequest) and request.run_key == "retrain:2025-05-03"
    assert next(s for s in env.defs.schedules if s.name == "weekly_retraining_schedule").job_name == "training_job"
    _halt(env, "bad fills")
    skipped = _tick(env, "weekly_retraining_schedule", "2025-05-10 06:00")
    assert isinstance(skipped, dg.SkipReason) and "bad fills" in skipped.skip_message

"""Sensors that trip the kill switch: risk limits, failed cycles, stale market data.

Tripping means: persist the halt with its reason in the state store, cancel the
book's queued and in-progress trading runs, and request a ``halt_book`` run
whose materialisation of ``risk/kill_switch`` records the event. A halt the
engine set itself (a breach found inside a cycle) is mirrored the same way.
Nothing here clears a halt: only the ``resume_book`` job does.
"""


import json

import dagster as dg
import pandas as pd

from foxlive_core.calendar import calendar_for
from foxlive_dagster.jobs import trading_cycle_job
from foxlive_dagster.kill_switch import BOOK_TAG, cancel_trading_runs, halt_book, halt_run_request
from foxlive_dagster.resources import FoxliveConfigResource, MarketDataResource, StateStoreResource


def trip(context, store, book: str, reason: str, actor: str) -> tuple[str, list[str]]:
    """Halt ``book`` (idempotent), cancel its trading runs, and request the recording halt run."""
    store.halt(book, reason, actor)
    halted_reason = store.halt_status(book)[1]
    cancelled = cancel_trading_runs(context.instance, book, halted_reason)
    context.log.info(f"kill switch tripped for {book}: {halted_reason}; cancelled {len(cancelled)} run(s)")
    return halted_reason, cancelled


@dg.sensor(
    name="risk_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    job=halt_book,
    description="Every ~30 s: trips the kill switch when the live book's daily loss or drawdown breaks its limit, "
    "and mirrors a halt the engine set itself.",
)
def risk_sensor(context: dg.SensorEvaluationContext, foxlive: FoxliveConfigResource, state: StateStoreResource):
    cfg = foxlive.get()
    store = state.get()
    book = cfg.book
    if not store.exists(book):
        return dg.SkipReason(f"book {book!r} has no state yet")
    cursor = json.loads(context.cursor) if context.cursor else {}
    halted, reason = store.halt_status(book)
    last = store.last_cycle(book)
    breach = ""
    if last is not None:
        if last["daily_return"] < -cfg.risk.daily_loss_limit:
            breach = f"daily_loss_limit: daily return {last['daily_return']:.2%} beyond -{cfg.risk.daily_loss_limit:.2%}"
        elif last["drawdown"] > cfg.risk.drawdown_limit:
            breach = f"drawdown_limit: drawdown {last['drawdown']:.2%} beyond {cfg.risk.drawdown_limit:.2%}"
    if halted and cursor.get(book) == reason:
        return dg.SkipReason(f"book {book!r} is halted ({reason}); waiting for an operator to resume it")
    if not halted and not breach:
        cursor.pop(book, None)
        return dg.SensorResult(skip_reason=f"book {book!r} within limits", cursor=json.dumps(cursor))
    actor = "risk_sensor" if not halted else store.load(book).halted_by or "engine"
    halted_reason, cancelled = trip(context, store, book, breach or reason, actor)
    cursor[book] = halted_reason
    return dg.SensorResult(
        run_requests=[halt_run_request(book, halted_reason, actor, run_key=f"halt:{book}:{halted_reason}")],
        cursor=json.dumps(cursor),
    )


def build_failure_sensor(max_failures_default: int = 3):
    @dg.run_failure_sensor(
        name="cycle_failure_sensor",
        monitored_jobs=[trading_cycle_job],
        request_job=halt_book,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Trips the kill switch after engine.max_consecutive_failures failed trading cycles in a row.",
    )
    def cycle_failure_sensor(context: dg.RunFailureSensorContext, foxlive: FoxliveConfigResource,
                             state: StateStoreResource):
        cfg = foxlive.get()
        book = context.dagster_run.tags.get(BOOK_TAG)
        if book != cfg.book:
            return dg.SkipReason(f"failed run {context.dagster_run.run_id} is not a live cycle of {cfg.book!r}")
        runs = context.instance.get_runs(
            filters=dg.RunsFilter(job_name=trading_cycle_job.name, tags={BOOK_TAG: book},
                                  statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]),
            limit=cfg.engine.max_consecutive_failures,
        )
        failures = 0
        for run in runs:
            if run.status != dg.DagsterRunStatus.FAILURE:
                break
            failures += 1
        if failures < cfg.engine.max_consecutive_failures:
            return dg.SkipReason(f"{failures} consecutive failed cycle(s) of {book!r}; the limit is "
                                 f"{cfg.engine.max_consecutive_failures}")
        store = state.get()
        reason = f"run_failures: {failures} consecutive trading cycles failed (last {context.dagster_run.run_id})"
        halted_reason, _ = trip(context, store, book, reason, "cycle_failure_sensor")
        return halt_run_request(book, halted_reason, "cycle_failure_sensor", run_key=f"halt:{book}:{context.dagster_run.run_id}")

    return cycle_failure_sensor


@dg.sensor(
    name="stale_data_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    job=halt_book,
    description="During a session, trips the kill switch when the newest market bar is older than "
    "engine.stale_data_bars bars.",
)
def stale_data_sensor(context: dg.SensorEvaluationContext, foxlive: FoxliveConfigResource,
                      market: MarketDataResource, state: StateStoreResource):
    cfg = foxlive.get()
    store = state.get()
    book = cfg.book
    if not store.exists(book) or store.halt_status(book)[0]:
        return dg.SkipReason(f"book {book!r} has no state yet or is already halted")
    cal = calendar_for(cfg.market)
    now = pd.Timestamp.now(tz="UTC")
    session = cal.sessions(now - pd.Timedelta(hours=1), now)
    if session.empty or not ((session["open"] < now) & (session["close"] > now)).any():
        return dg.SkipReason(f"the {cal.code} session is closed")
    source = market.get()
    expected = cal.latest_bar_at_or_before(now)
    newest = source.last_time
    lag_bars = len(cal.bar_times(newest + pd.Timedelta(seconds=1), expected)) if newest < expected else 0
    if lag_bars <= cfg.engine.stale_data_bars:
        return dg.SkipReason(f"market data is current (newest bar {newest}, {lag_bars} bar(s) behind)")
    reason = f"stale_data: newest bar {newest} is {lag_bars} bars behind {expected} (limit {cfg.engine.stale_data_bars})"
    halted_reason, _ = trip(context, store, book, reason, "stale_data_sensor")
    return dg.SensorResult(run_requests=[halt_run_request(book, halted_reason, "stale_data_sensor",
                                                          run_key=f"halt:{book}:{expected}")])

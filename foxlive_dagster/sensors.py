"""Sensors that trip the kill switch: risk limits, failed cycles, stale market data.

Tripping means: persist the halt with its reason in the state store, cancel the
book's queued and in-progress runs however they were launched (see
foxlive_dagster.kill_switch; a run whose cycle is committed finishes its
reports), and request a ``halt_book`` run whose materialisation of
``risk/kill_switch`` records the event. A halt the
engine set itself (a breach found inside a cycle) is mirrored the same way.
Nothing here clears a halt: only the ``resume_book`` job does.
"""


import json

import dagster as dg
import pandas as pd

from foxlive_core.calendar import calendar_for
from foxlive_core.pipeline.risk_checks import limit_breach
from foxlive_dagster.kill_switch import BOOK_TAG, cancel_book_runs, halt_book, halt_run_request, run_binding
from foxlive_dagster.resources import FoxliveConfigResource, MarketDataResource, StateStoreResource


def _now() -> pd.Timestamp:
    """The wall clock (a seam for tests of the stale-data sensor)."""
    return pd.Timestamp.now(tz="UTC")


def _last_event_time(store, book: str, kind: str) -> str | None:
    """When the book's newest ``kind`` event ('halt', 'resume') was recorded, or None."""
    events = store.events(book)
    events = events[events["kind"] == kind]
    return str(events["time"].iloc[-1]) if len(events) else None


def trip(context, cfg, store, book: str, reason: str, actor: str) -> tuple[str, list[str], str]:
    """Halt ``book`` (idempotent), cancel its trading runs; returns (the halt's reason, cancelled runs, halt id).

    The halt id (when the halt was recorded) keys the recording ``halt_book`` run, so every halt is recorded
    once, and a later halt with the same reason (after a resume) is recorded again.
    """
    store.halt(book, reason, actor)
    halted_reason = store.halt_status(book)[1]
    cancelled = cancel_book_runs(context.instance, cfg, store, book, halted_reason)
    context.log.info(f"kill switch tripped for {book}: {halted_reason}; cancelled {len(cancelled)} run(s)")
    return halted_reason, cancelled, _last_event_time(store, book, "halt") or halted_reason


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
    # The cursor holds, per book, the id (record time) of the halt already tripped or mirrored.
    cursor = json.loads(context.cursor) if context.cursor else {}
    halted, reason = store.halt_status(book)
    halt_id = (_last_event_time(store, book, "halt") or reason) if halted else ""
    if halted and cursor.get(book) == halt_id:
        return dg.SkipReason(f"book {book!r} is halted ({reason}); waiting for an operator to resume it")
    last = store.last_cycle(book)
    breach = ""
    if last is not None and not halted:
        # The engine's own rule and wording (foxlive_core.pipeline.risk_checks), on the cycle it committed.
        reason, detail = limit_breach(last["daily_return"], last["drawdown"], cfg.risk.daily_loss_limit,
                                      cfg.risk.drawdown_limit)
        breach = f"{reason}: {detail}" if reason else ""
        resumed = _last_event_time(store, book, "resume")
        if breach and resumed is not None and pd.Timestamp(last["committed_at"]) <= pd.Timestamp(resumed):
            # An operator resumed the book after this cycle: its breach was reviewed. The next cycle is
            # judged afresh (and the engine halts the book itself if the loss persists).
            cursor.pop(book, None)
            return dg.SensorResult(
                skip_reason=f"book {book!r}: {breach} at its last cycle {last['cycle_time']}, reviewed by the resume "
                f"at {resumed}; the next cycle is judged afresh", cursor=json.dumps(cursor))
    if not halted and not breach:
        cursor.pop(book, None)
        return dg.SensorResult(skip_reason=f"book {book!r} within limits", cursor=json.dumps(cursor))
    # A breach the sensor found, or a halt set elsewhere (the engine, `foxlive halt`) that it mirrors.
    actor = "risk_sensor" if not halted else store.load(book).halted_by or "engine"
    halted_reason, cancelled, halt_id = trip(context, cfg, store, book, breach or reason, actor)
    cursor[book] = halt_id
    return dg.SensorResult(
        run_requests=[halt_run_request(book, halted_reason, actor, run_key=f"halt:{book}:{halt_id}")],
        cursor=json.dumps(cursor),
    )


def build_failure_sensor():
    @dg.run_failure_sensor(
        name="cycle_failure_sensor",
        request_job=halt_book,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Trips the kill switch after engine.max_consecutive_failures failed cycles of the live book in "
        "a row, whatever job ran them (trading_cycle_job, a UI materialisation, a backfill).",
    )
    def cycle_failure_sensor(context: dg.RunFailureSensorContext, foxlive: FoxliveConfigResource,
                             state: StateStoreResource):
        cfg = foxlive.get()
        failed = context.dagster_run
        binding = run_binding(context.instance, failed, cfg)
        if binding is None or binding.book != cfg.book:
            return dg.SkipReason(f"failed run {failed.run_id} is not a live cycle of {cfg.book!r}")
        book = binding.book
        store = state.get()
        halted, halt_reason = store.halt_status(book)
        if halted:
            return dg.SkipReason(f"book {book!r} is already halted ({halt_reason}); failed run {failed.run_id} "
                                 "is not counted")
        # Failures before an operator's resume were reviewed by that operator: count only the runs after it.
        # Every run that reached a step trading the book carries its book tag (kill_switch.bind_run).
        resumed = _last_event_time(store, book, "resume")
        limit = cfg.engine.max_consecutive_failures
        records = context.instance.get_run_records(
            filters=dg.RunsFilter(tags={BOOK_TAG: book},
                                  statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE],
                                  created_after=pd.Timestamp(resumed).to_pydatetime() if resumed else None),
            limit=limit + 1,
        )
        failures = 1
        for record in records:
            if record.dagster_run.run_id == failed.run_id:
                continue
            if record.dagster_run.status != dg.DagsterRunStatus.FAILURE:
                break
            failures += 1
        if failures < limit:
            return dg.SkipReason(f"{failures} consecutive failed cycle(s) of {book!r}; the limit is {limit}")
        reason = f"run_failures: {failures} consecutive trading cycles failed (last {failed.run_id})"
        # Cycles failing before the book's first commit must still halt it: create the book as a cycle would.
        store.create_book(book, cfg.broker.starting_cash)
        halted_reason, _, _ = trip(context, cfg, store, book, reason, "cycle_failure_sensor")
        return halt_run_request(book, halted_reason, "cycle_failure_sensor", run_key=f"halt:{book}:{failed.run_id}")

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
    now = _now()
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
    halted_reason, _, _ = trip(context, cfg, store, book, reason, "stale_data_sensor")
    return dg.SensorResult(run_requests=[halt_run_request(book, halted_reason, "stale_data_sensor",
                                                          run_key=f"halt:{book}:{expected}")])

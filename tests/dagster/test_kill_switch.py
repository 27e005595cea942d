"""The kill switch: runs bound to their book however launched, refused and cancelled while it is halted; the
risk, run-failure and stale-data sensors; halt and resume jobs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import dagster as dg
import pandas as pd
import pytest

from foxlive_core.config import _deep_merge
from foxlive_dagster import sensors as sensors_module
from foxlive_dagster.kill_switch import BAR_TAG, BOOK_TAG, KILL_SWITCH_BOOK_TAG, KILL_SWITCH_KEY
from tests.dagster.conftest import (B1, B2, CYCLE_ASSETS, S1, bar_config, make_env, metadata_values, step_failure,
                                    write_cycle)

T1 = pd.Timestamp("2025-05-01T13:35Z")


def sensor_def(env, name: str):
    return next(s for s in env.defs.sensors if s.name == name)


def evaluate(env, instance, name: str, cursor: str | None = None):
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=env.resources,
                                 definitions=env.defs, sensor_name=name) as context:
        return sensor_def(env, name)(context)


def trading_run(env, instance, book: str, status=dg.DagsterRunStatus.QUEUED, tags=None, job_name="trading_cycle_job",
                asset_selection=None, run_config=None):
    """A run in the instance, by default a trading_cycle_job run naming ``book`` in its config."""
    from dagster._core.remote_origin import (
        InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.utils import make_new_run_id

    # Queued runs need a job origin (where the daemon would launch them from): the code location's module.
    location = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="foxlive_dagster.definitions", attribute="defs"), location_name="foxlive")
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), job_name)
    return instance.add_run(dg.DagsterRun(
        job_name=job_name, run_id=make_new_run_id(), status=status,
        tags={BOOK_TAG: book, "dagster/partition": S1} if tags is None else tags, remote_job_origin=origin,
        asset_selection=None if asset_selection is None else frozenset(dg.AssetKey(k) for k in asset_selection),
        run_config={"ops": {"trading_cycle": {"config": {"book": book}}}} if run_config is None else run_config,
    ))


def status_of(instance, run) -> dg.DagsterRunStatus:
    return instance.get_run_by_id(run.run_id).status


def kill_switch_event(instance) -> dict:
    event = instance.get_latest_materialization_event(KILL_SWITCH_KEY)
    assert event is not None
    return metadata_values(event.asset_materialization)


def run_halt_request(env, instance, request: dg.RunRequest):
    assert request.job_name == "halt_book"
    result = env.job("halt_book").execute_in_process(run_config=request.run_config, instance=instance,
                                                     tags=request.tags)
    assert result.success
    return result


def resume(env, instance, operator="alice", reason="loss reviewed", raise_on_error=True):
    return env.job("resume_book").execute_in_process(
        run_config={"operator": operator, "reason": reason}, instance=instance, raise_on_error=raise_on_error,
    )


def test_risk_breach_halts_cancels_records_and_only_resume_clears_it(env, instance):
    book = env.cfg.book
    store = env.store()
    assert isinstance(evaluate(env, instance, "risk_sensor"), dg.SkipReason)  # no book yet

    assert env.live_cycle(instance, B1).success  # a real live cycle
    within = evaluate(env, instance, "risk_sensor")
    assert isinstance(within, dg.SensorResult) and not within.run_requests
    assert "within limits" in within.skip_reason.skip_message

    queued = trading_run(env, instance, book)
    started = trading_run(env, instance, book, status=dg.DagsterRunStatus.STARTED)
    other_book = trading_run(env, instance, "other_book")
    write_cycle(store, book, T1 + pd.Timedelta(minutes=5), daily_return=-(env.cfg.risk.daily_loss_limit + 0.01))

    tripped = evaluate(env, instance, "risk_sensor")
    assert isinstance(tripped, dg.SensorResult) and len(tripped.run_requests) == 1
    halted, reason = store.halt_status(book)
    # The engine's wording (foxlive_core.pipeline.risk_checks.limit_breach): a -3 % day against the 2 % limit.
    assert halted and reason == "daily_loss_limit: daily loss -3.00% beyond limit -2.00%"
    events = store.events(book)
    assert list(events["kind"]) == ["halt"] and events["actor"].iloc[-1] == "risk_sensor"
    assert status_of(instance, queued) == dg.DagsterRunStatus.CANCELED
    assert status_of(instance, started) == dg.DagsterRunStatus.CANCELED
    assert status_of(instance, other_book) == dg.DagsterRunStatus.QUEUED
    request = tripped.run_requests[0]
    assert request.tags[KILL_SWITCH_BOOK_TAG] == book and BOOK_TAG not in request.tags
    assert request.run_config["reason"] == reason

    again = evaluate(env, instance, "risk_sensor", cursor=tripped.cursor)
    assert isinstance(again, dg.SkipReason) and "waiting for an operator" in again.skip_message

    run_halt_request(env, instance, request)
    recorded = kill_switch_event(instance)
    assert recorded["event"] == "halt" and recorded["halted"] is True and recorded["reason"] == reason
    assert recorded["book"] == book and recorded["actor"] == "risk_sensor" and recorded["state"] == "HALTED"
    halt_event = instance.get_latest_materialization_event(KILL_SWITCH_KEY).asset_materialization
    assert halt_event.description == f"HALTED {book}: {reason}" and halt_event.tags["foxlive/kill_switch"] == "halt"

    # Nothing but resume_book clears the halt: sensors (even with a lost cursor), schedules, cycles.
    lost_cursor = evaluate(env, instance, "risk_sensor")
    assert isinstance(lost_cursor, dg.SensorResult)
    with dg.build_schedule_context(instance=instance, resources=env.resources,
                                   scheduled_execution_time=pd.Timestamp("2025-05-01 09:50", tz="America/New_York")
                                   .to_pydatetime()) as ctx:
        assert isinstance(next(s for s in env.defs.schedules if s.name == "trading_cycle_schedule")(ctx), dg.SkipReason)
    refused = env.live_cycle(instance, "2025-05-01T13:45:00+00:00", raise_on_error=False)  # any launch path
    assert "is halted" in step_failure(refused, "market_bars") and "resume_book" in step_failure(refused, "market_bars")
    assert len(store.cycles(book)) == 2 and store.halt_status(book) == (True, reason)
    # resume_book validates its config when launched: a blank operator or reason starts no run.
    runs_before = len(instance.get_runs())
    for operator, why in [("", "loss reviewed"), ("alice", "  ")]:
        with pytest.raises(dg.DagsterInvalidConfigError, match="must not be blank"):
            resume(env, instance, operator=operator, reason=why)
    with pytest.raises(dg.DagsterInvalidConfigError):
        env.job("resume_book").execute_in_process(instance=instance)
    assert len(instance.get_runs()) == runs_before
    assert store.halt_status(book) == (True, reason)

    resumed = resume(env, instance)
    assert resumed.success
    assert store.halt_status(book) == (False, "")
    recorded = kill_switch_event(instance)
    assert recorded["event"] == "resume" and recorded["halted"] is False and recorded["actor"] == "alice"
    assert recorded["cleared_halt_reason"] == reason and recorded["state"] == "TRADING"
    resume_event = instance.get_latest_materialization_event(KILL_SWITCH_KEY).asset_materialization
    assert resume_event.description == f"TRADING {book}: resumed by alice: loss reviewed"
    assert resume_event.tags["foxlive/kill_switch"] == "resume"
    assert list(store.events(book)["kind"]) == ["halt", "resume"]
    assert not resume(env, instance, raise_on_error=False).success  # not halted: nothing to resume

    # The reviewed breach does not halt the book again, and the sensor says it is still beyond the limit;
    # a new breaching cycle halts it, recorded as a new halt.
    after = evaluate(env, instance, "risk_sensor", cursor=tripped.cursor)
    assert isinstance(after, dg.SensorResult) and not after.run_requests
    assert store.halt_status(book)[0] is False
    assert after.skip_reason.skip_message.startswith(f"book {book!r}: {reason} at its last cycle")
    assert "reviewed by the resume" in after.skip_reason.skip_message
    write_cycle(store, book, T1 + pd.Timedelta(minutes=15), drawdown=env.cfg.risk.drawdown_limit + 0.05)
    second = evaluate(env, instance, "risk_sensor", cursor=after.cursor)
    assert len(second.run_requests) == 1 and store.halt_status(book)[1].startswith("drawdown_limit")
    assert second.run_requests[0].run_key != request.run_key


def test_risk_sensor_mirrors_a_halt_set_elsewhere(env, instance):
    book = env.cfg.book
    store = env.store()
    store.create_book(book, env.cfg.broker.starting_cash)
    write_cycle(store, book, T1)
    queued = trading_run(env, instance, book)
    store.halt(book, "engine: daily loss", "engine")
    result = evaluate(env, instance, "risk_sensor")
    assert len(result.run_requests) == 1
    assert result.run_requests[0].run_config == {"book": book, "reason": "engine: daily loss", "actor": "engine"}
    assert status_of(instance, queued) == dg.DagsterRunStatus.CANCELED
    assert isinstance(evaluate(env, instance, "risk_sensor", cursor=result.cursor), dg.SkipReason)
    run_halt_request(env, instance, result.run_requests[0])
    assert kill_switch_event(instance)["reason"] == "engine: daily loss"
    assert store.halt_status(book) == (True, "engine: daily loss")

    # Resumed and halted again for the same reason between two ticks: a new halt, mirrored and recorded anew.
    assert store.resume(book, "bob", "checked")
    assert store.halt(book, "engine: daily loss", "engine")
    again = evaluate(env, instance, "risk_sensor", cursor=result.cursor)
    assert isinstance(again, dg.SensorResult) and len(again.run_requests) == 1
    assert again.run_requests[0].run_key != result.run_requests[0].run_key


def _fail_a_cycle(env, instance, book: str):
    """A trading_cycle_job run of ``book`` that fails (its model run is missing), and its run record."""
    run_config = _deep_merge(bar_config(B1), {"ops": {"trading_cycle": {"config": {"book": book}}}})
    result = env.job("trading_cycle_job").execute_in_process(
        partition_key=S1, instance=instance, run_config=run_config, raise_on_error=False,
    )
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    assert run.status == dg.DagsterRunStatus.FAILURE
    return result, run


def evaluate_failure(env, instance, result, run):
    sensor = sensor_def(env, "cycle_failure_sensor")
    with dg.build_run_status_sensor_context(
        sensor_name=sensor.name, dagster_event=result.get_run_failure_event(), dagster_instance=instance,
        dagster_run=run, resources=env.resources,
    ) as status_context:
        return sensor(status_context.for_run_failure())


def test_consecutive_failed_cycles_halt_the_book(env, instance):
    book = env.cfg.book
    store = env.store()
    assert env.cfg.engine.max_consecutive_failures == 3
    # The active model run disappears: every cycle now fails in `predictions`.
    (env.cfg.models_root / "active.json").write_text(json.dumps({"run_id": "20990101T000000000000Z"}))

    result, run = _fail_a_cycle(env, instance, book)
    first = evaluate_failure(env, instance, result, run)
    assert isinstance(first, dg.SkipReason) and "1 consecutive" in first.skip_message

    # Earlier history: a success breaks the streak, so failures before it do not count.
    for status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE):
        trading_run(env, instance, book, status=status)
    result, run = _fail_a_cycle(env, instance, book)
    second = evaluate_failure(env, instance, result, run)
    assert isinstance(second, dg.SkipReason) and "2 consecutive" in second.skip_message
    assert not store.exists(book) or not store.halt_status(book)[0]

    other, other_run = _fail_a_cycle(env, instance, "other")
    skipped = evaluate_failure(env, instance, other, other_run)
    assert isinstance(skipped, dg.SkipReason) and "not a live cycle" in skipped.skip_message

    # A UI materialisation (no tags at launch) of the live book counts like a scheduled cycle.
    queued = trading_run(env, instance, book)
    ui = dg.materialize(env.assets(), partition_key=S1, resources=env.resources, instance=instance,
                        run_config=bar_config(B1), raise_on_error=False)
    assert not ui.success
    result, run = ui, instance.get_run_by_id(ui.run_id)
    assert run.tags[BOOK_TAG] == book  # tagged by its first step
    request = evaluate_failure(env, instance, result, run)
    assert isinstance(request, dg.RunRequest) and request.job_name == "halt_book"
    halted, reason = store.halt_status(book)
    assert halted and reason.startswith("run_failures: 3 consecutive") and run.run_id in reason
    assert status_of(instance, queued) == dg.DagsterRunStatus.CANCELED
    run_halt_request(env, instance, request)
    assert kill_switch_event(instance)["actor"] == "cycle_failure_sensor"
    # Failures while halted (runs refused) are not counted again.
    result, run = _fail_a_cycle(env, instance, book)
    again = evaluate_failure(env, instance, result, run)
    assert isinstance(again, dg.SkipReason) and "already halted" in again.skip_message

    # After an operator resumes, the failures before the resume no longer count.
    assert resume(env, instance).success
    result, run = _fail_a_cycle(env, instance, book)
    after = evaluate_failure(env, instance, result, run)
    assert isinstance(after, dg.SkipReason) and "1 consecutive" in after.skip_message
    assert store.halt_status(book) == (False, "")


def test_stale_data_sensor(env, instance, monkeypatch):
    book = env.cfg.book
    store = env.store()
    skip = evaluate(env, instance, "stale_data_sensor")
    assert isinstance(skip, dg.SkipReason) and "no state yet" in skip.skip_message
    store.create_book(book, env.cfg.broker.starting_cash)

    monkeypatch.setattr(sensors_module, "_now", lambda: pd.Timestamp("2025-05-03T15:00Z"))  # a Saturday
    closed = evaluate(env, instance, "stale_data_sensor")
    assert isinstance(closed, dg.SkipReason) and "closed" in closed.skip_message

    monkeypatch.setattr(sensors_module, "_now", lambda: pd.Timestamp("2025-05-01T15:02Z"))  # 11:02 ET
    current = evaluate(env, instance, "stale_data_sensor")
    assert isinstance(current, dg.SkipReason) and "current" in current.skip_message

    # A feed whose newest bar is an hour old: 12 bars behind the limit of 3.
    stale = SimpleNamespace(last_time=pd.Timestamp("2025-05-01T14:00Z"))
    monkeypatch.setattr("foxlive_dagster.resources._market", lambda *key: stale)
    queued = trading_run(env, instance, book)
    tripped = evaluate(env, instance, "stale_data_sensor")
    assert isinstance(tripped, dg.SensorResult) and len(tripped.run_requests) == 1
    halted, reason = store.halt_status(book)
    assert halted and reason.startswith("stale_data") and "12 bars behind" in reason
    assert status_of(instance, queued) == dg.DagsterRunStatus.CANCELED

    already = evaluate(env, instance, "stale_data_sensor")
    assert isinstance(already, dg.SkipReason) and "already halted" in already.skip_message


def test_a_halt_cancels_every_run_that_trades_the_book_however_launched(env, instance):
    book = env.cfg.book
    store = env.store()
    assert env.live_cycle(instance, B1).success
    every = [*CYCLE_ASSETS]
    runs = {
        # Materialize in the UI: __ASSET_JOB, no tags; the book follows from the run itself.
        "ui": trading_run(env, instance, book, tags={}, job_name="__ASSET_JOB", asset_selection=every, run_config={}),
        "ui_started": trading_run(env, instance, book, status=dg.DagsterRunStatus.STARTED, tags={},
                                  job_name="__ASSET_JOB", asset_selection=every, run_config={}),
        "api_job": trading_run(env, instance, book, tags={}, run_config={}),  # trading_cycle_job launched over GraphQL, untagged
        "named_live": trading_run(env, instance, book, tags={}, job_name="__ASSET_JOB", asset_selection=every,
                                  run_config={"ops": {"trading_cycle": {"config": {"book": book}}}}),
        # Runs that do not trade the live book stay.
        "bars_only": trading_run(env, instance, book, tags={}, job_name="__ASSET_JOB", asset_selection=["market_bars"], run_config={}),
        "replay": trading_run(env, instance, book, job_name="__ASSET_JOB", asset_selection=every,
                              tags={"dagster/backfill": "b1", "dagster/asset_partition_range_start": "2025-04-01",
                                    "dagster/asset_partition_range_end": "2025-04-30"}, run_config={}),
        "other_book": trading_run(env, instance, book, tags={}, run_config={"ops": {"trading_cycle": {"config": {
            "book": "paper2"}}}}),
        "training": trading_run(env, instance, book, tags={}, job_name="training_job", run_config={}),
        # A started cycle whose bar is committed only reports from here on: it finishes.
        "committed": trading_run(env, instance, book, status=dg.DagsterRunStatus.STARTED, tags={BAR_TAG: B1},
                                 run_config={}),
        "not_committed": trading_run(env, instance, book, status=dg.DagsterRunStatus.STARTED, tags={BAR_TAG: B2},
                                     run_config={}),
    }
    halted = env.job("halt_book").execute_in_process(
        run_config={"book": book, "reason": "operator: stop", "actor": "pytest"}, instance=instance)
    assert halted.success
    cancelled = {name for name, run in runs.items() if status_of(instance, run) == dg.DagsterRunStatus.CANCELED}
    assert cancelled == {"ui", "ui_started", "api_job", "named_live", "not_committed"}
    assert kill_switch_event(instance)["cancelled_runs"] == 5
    assert store.halt_status(book) == (True, "operator: stop")


def test_the_cycle_that_trips_a_halt_completes_its_snapshot_and_risk_report(small_run, tmp_path, instance):
    # The book once stood at twice its cash: the next cycle finds a 50 % drawdown and the engine halts it.
    env = make_env(tmp_path, small_run)
    book = env.cfg.book
    store = env.store()
    cash = env.cfg.broker.starting_cash
    store.create_book(book, cash)
    write_cycle(store, book, pd.Timestamp("2025-04-30T20:00Z"), high_water_mark=2 * cash)
    result = env.live_cycle(instance, B1)
    assert result.success
    assert store.halt_status(book)[0] and store.load(book).halted_by == "engine"
    mats = {ev.materialization.asset_key.to_user_string(): metadata_values(ev.materialization)
            for ev in result.get_asset_materialization_events()}
    assert set(mats) == set(CYCLE_ASSETS)
    assert mats["trading_cycle"]["halted"] is True and mats["trading_cycle"]["last_cycle"] == str(pd.Timestamp(B1))
    assert mats["risk_report"]["halted"] is True and mats["risk_report"]["halt_reason"].startswith("drawdown_limit")
    assert mats["risk_report"]["drawdown"] == pytest.approx(0.5)
    tripping_bar, next_bar = B1, B2

    # The risk sensor mirrors the engine's halt while that run is still reporting: it is spared, others are not.
    reporting = trading_run(env, instance, book, status=dg.DagsterRunStatus.STARTED, tags={BAR_TAG: tripping_bar})
    queued = trading_run(env, instance, book, tags={BAR_TAG: next_bar})
    mirrored = evaluate(env, instance, "risk_sensor")
    assert len(mirrored.run_requests) == 1 and mirrored.run_requests[0].run_config["actor"] == "engine"
    assert status_of(instance, reporting) == dg.DagsterRunStatus.STARTED
    assert status_of(instance, queued) == dg.DagsterRunStatus.CANCELED

    # The next bar's run is refused before it trades; the book keeps its one cycle.
    cycles = len(store.cycles(book))
    refused = env.live_cycle(instance, next_bar, raise_on_error=False)
    assert "is halted" in step_failure(refused, "market_bars")
    assert len(store.cycles(book)) == cycles

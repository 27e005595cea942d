"""The code location loads, validates, and has the asset graph, jobs, schedules and sensors of the design."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from foxlive_core.calendar import calendar_for
from foxlive_dagster.partitions import cycle_partitions, cycle_times_for_window, partition_key_for_bar
from tests.dagster.conftest import CYCLE_ASSETS, P1


def test_definitions_validate_and_every_job_resolves(env):
    dg.Definitions.validate_loadable(env.defs)
    names = {j.name for j in env.defs.resolve_all_job_defs()}
    assert {"trading_cycle_job", "training_job", "end_of_day_job", "halt_book", "resume_book"} <= names
    for name in names:
        assert env.job(name).name == name
    cycle_job = env.job("trading_cycle_job")
    assert cycle_job.partitions_def is not None
    assert {k.to_user_string() for k in cycle_job.asset_layer.executable_asset_keys} >= set(CYCLE_ASSETS)


def test_the_module_level_defs_load_from_the_environment(env, monkeypatch):
    monkeypatch.setenv("FOXLIVE_CONFIG", str(env.config_path))
    monkeypatch.setenv("FOXLIVE_HOME", str(env.home))
    from foxlive_dagster import definitions

    defs = definitions.defs()
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("trading_cycle_job").name == "trading_cycle_job"


def test_asset_graph_has_the_trading_lineage(env):
    graph = env.defs.resolve_asset_graph()
    parents = {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys} for k in graph.get_all_asset_keys()}
    chain = CYCLE_ASSETS
    for up, down in zip(chain, chain[1:]):
        assert up in parents[down], (up, down)
    assert "active_models" in parents["predictions"]
    assert parents["active_models"] == {"trained_models"}
    assert "risk/kill_switch" in parents
    assert "end_of_day_report" in parents
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert checks == {
        ("market_bars", "market_data_fresh"), ("portfolio_snapshot", "gross_exposure_within_limit"),
        ("portfolio_snapshot", "position_limit"), ("risk_report", "drawdown_within_limit"),
        ("risk_report", "daily_loss_within_limit"),
    }
    fresh = env.defs.resolve_assets_def("market_bars").check_specs_by_output_name
    assert any(spec.name == "market_data_fresh" and spec.blocking for spec in fresh.values())
    for key in CYCLE_ASSETS:
        policy = env.defs.resolve_assets_def(key).backfill_policy
        assert policy is not None and policy.max_partitions_per_run is None  # single_run


def test_sensors_run_by_default_and_schedules_exist(env):
    sensors = {s.name: s for s in env.defs.sensors}
    assert set(sensors) == {"risk_sensor", "cycle_failure_sensor", "stale_data_sensor"}
    for s in sensors.values():
        assert s.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensors["risk_sensor"].minimum_interval_seconds <= 30
    schedules = {s.name: s for s in env.defs.schedules}
    assert set(schedules) == {"trading_cycle_schedule", "end_of_day_schedule", "weekly_retraining_schedule"}
    for s in schedules.values():
        assert s.execution_timezone == "America/New_York"
    assert schedules["trading_cycle_schedule"].job_name == "trading_cycle_job"
    assert schedules["end_of_day_schedule"].job_name == "end_of_day_job"
    assert schedules["weekly_retraining_schedule"].job_name == "training_job"


def test_cycle_partitions_are_exactly_the_calendar_bars(env):
    cfg = env.cfg
    cal = calendar_for(cfg.market)
    parts = cycle_partitions(cfg)
    keys = parts.get_partition_keys()
    for day, expected in [("2025-05-01", 78), ("2025-07-03", 42), ("2025-07-04", 0), ("2025-05-03", 0),
                          ("2025-03-10", 78), ("2025-11-28", 42)]:
        day_keys = [k for k in keys if k.startswith(day)]
        bars = cal.bar_times(pd.Timestamp(day, tz=cal.tz).tz_convert("UTC"),
                             (pd.Timestamp(day, tz=cal.tz) + pd.Timedelta(days=1)).tz_convert("UTC"))
        assert len(day_keys) == len(bars) == expected, day
        assert day_keys == [partition_key_for_bar(cfg, t) for t in bars]
    window = parts.time_window_for_partition_key(P1)
    assert list(cycle_times_for_window(cfg, window)) == [pd.Timestamp("2025-05-01T13:35Z")]


def test_fx_cycle_partitions_are_the_fx_week_through_a_daylight_saving_change():
    from foxlive_core.calendar import TradingCalendar
    from foxlive_dagster.partitions import _cycle_partitions

    keys = _cycle_partitions("24/5", 60, "2025-10-27", "America/New_York").get_partition_keys()
    # New York clocks go back on Sunday 2 Nov 2025 at 02:00: the hour from 01:00 comes twice, inside the weekend.
    # Hourly windows start Friday 31 Oct 00:00 .. 16:00 (17), none on Saturday, Sunday 17:00 .. 23:00 (7).
    days = {day: [k[11:] for k in keys if k.startswith(day)] for day in ("2025-10-31", "2025-11-01", "2025-11-02")}
    assert days["2025-10-31"] == [f"{h:02d}:00" for h in range(17)]
    assert days["2025-11-01"] == []
    assert days["2025-11-02"] == [f"{h:02d}:00" for h in range(17, 24)]
    bars = TradingCalendar("24/5", 60).bar_times("2025-10-31T05:00Z", "2025-11-03T05:00Z")
    window_starts = (bars - pd.Timedelta(hours=1)).tz_convert("America/New_York").strftime("%Y-%m-%d-%H:%M")
    assert [k for k in keys if "2025-10-31" <= k < "2025-11-03"] == list(window_starts)
    # Christmas Day 2025 (a Thursday) is shut: no window from Wednesday 17:00 to Thursday 17:00 New York
    christmas = [k for k in keys if "2025-12-24" <= k < "2025-12-26"]
    assert christmas == [f"2025-12-24-{h:02d}:00" for h in range(17)] + [f"2025-12-25-{h:02d}:00" for h in range(17, 24)]

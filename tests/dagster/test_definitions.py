"""The code location loads, validates, and has the asset graph, jobs, schedules and sensors of the design."""

from __future__ import annotations

import tomllib
import warnings
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest
import yaml

from foxlive_dagster.partitions import session_cycle_times, session_key, session_partitions
from tests.dagster.conftest import CYCLE_ASSETS

ROOT = Path(__file__).resolve().parents[2]
ET = ZoneInfo("America/New_York")


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
    assert parents["risk/kill_switch"] == {"risk_report"}  # the halt flag's lineage
    assert parents["end_of_day_report"] == {"risk_report"}
    # One partitioning for the cycle and report assets: a session's report maps to the same session.
    parts = {graph.get(dg.AssetKey(k)).partitions_def for k in [*CYCLE_ASSETS, "end_of_day_report"]}
    assert len(parts) == 1
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


def test_session_partitions_are_exactly_the_calendar_sessions(env):
    keys = session_partitions(env.cfg).get_partition_keys(current_time=datetime(2026, 1, 1, tzinfo=ET))
    may = [k for k in keys if k.startswith("2025-05")]
    assert len(may) == 21  # 22 weekdays, less Memorial Day (26th)
    for day in ["2025-07-04", "2025-05-03", "2025-01-09", "2025-12-25", "2025-05-26"]:  # holiday, Saturday, closure
        assert day not in keys
    for day in ["2025-01-02", "2025-07-03", "2025-11-28", "2025-12-31"]:
        assert day in keys
    assert len([k for k in keys if k < "2026"]) == 250  # 261 weekdays of 2025, less 10 holidays and the 9 January closure


def test_a_session_in_progress_is_a_partition_and_the_weekend_keeps_friday(env):
    parts = session_partitions(env.cfg)
    assert parts.get_partition_keys(current_time=datetime(2025, 5, 1, 9, 40, tzinfo=ET))[-1] == "2025-05-01"
    assert parts.get_partition_keys(current_time=datetime(2025, 5, 1, 16, 0, tzinfo=ET))[-1] == "2025-05-01"
    assert parts.get_partition_keys(current_time=datetime(2025, 5, 3, 12, 0, tzinfo=ET))[-1] == "2025-05-02"


@pytest.mark.parametrize("key, bars, first, last", [
    ("2025-05-01", 78, "2025-05-01T13:35Z", "2025-05-01T20:00Z"),   # EDT: 09:35 .. 16:00
    ("2025-03-07", 78, "2025-03-07T14:35Z", "2025-03-07T21:00Z"),   # EST, the Friday before the DST change
    ("2025-03-10", 78, "2025-03-10T13:35Z", "2025-03-10T20:00Z"),   # the Monday after it
    ("2025-07-03", 42, "2025-07-03T13:35Z", "2025-07-03T17:00Z"),   # half day: 13:00 close
    ("2025-11-28", 42, "2025-11-28T14:35Z", "2025-11-28T18:00Z"),
])
def test_a_partitions_cycles_are_its_sessions_bar_closes(env, key, bars, first, last):
    times = session_cycle_times(env.cfg, key, key)
    assert len(times) == bars
    assert times[0] == pd.Timestamp(first) and times[-1] == pd.Timestamp(last)
    assert (times.diff()[1:] == pd.Timedelta(minutes=5)).all()
    assert {session_key(env.cfg, t) for t in times} == {key}
    # A range is its sessions' bars, holidays and weekends holding none.
    assert len(session_cycle_times(env.cfg, "2025-07-02", "2025-07-07")) == 78 + 42 + 78


def test_fx_session_partitions_are_the_fx_week_through_a_daylight_saving_change(env):
    from dataclasses import replace

    from foxlive_dagster.schedules import bar_close_crons

    cfg = replace(env.cfg, market=replace(env.cfg.market, calendar="24/5"),
                  engine=replace(env.cfg.engine, partitions_start="2025-10-27"))
    keys = session_partitions(cfg).get_partition_keys(current_time=datetime(2026, 1, 10, tzinfo=ET))
    # Sessions are Monday to Friday; 25 December and 1 January are shut.
    assert [k for k in keys if "2025-10-30" <= k <= "2025-11-04"] == ["2025-10-30", "2025-10-31", "2025-11-03",
                                                                      "2025-11-04"]
    assert [k for k in keys if "2025-12-24" <= k <= "2026-01-02"] == ["2025-12-24", "2025-12-26", "2025-12-29",
                                                                      "2025-12-30", "2025-12-31", "2026-01-02"]
    # New York clocks go back on Sunday 2 Nov 2025: Monday's session opens Sunday 17:00 EST (22:00Z), 24 hours.
    monday = session_cycle_times(cfg, "2025-11-03", "2025-11-03")
    assert len(monday) == 288 and monday[0] == pd.Timestamp("2025-11-02T22:05Z") and monday[-1] == pd.Timestamp(
        "2025-11-03T22:00Z")
    friday = session_cycle_times(cfg, "2025-10-31", "2025-10-31")
    assert friday[0] == pd.Timestamp("2025-10-30T21:05Z") and friday[-1] == pd.Timestamp("2025-10-31T21:00Z")  # EDT
    # The day after Christmas opens at 17:00 on Christmas Day.
    assert session_cycle_times(cfg, "2025-12-26", "2025-12-26")[0] == pd.Timestamp("2025-12-25T22:05Z")
    # The schedule ticks at exactly the bar closes of the FX week, across the clock change.
    from dagster._utils.schedules import schedule_execution_time_iterator

    start, end = pd.Timestamp("2025-10-26", tz="America/New_York"), pd.Timestamp("2025-11-08", tz="America/New_York")
    ticks = []
    for t in schedule_execution_time_iterator(start.timestamp(), bar_close_crons(cfg), "America/New_York"):
        if t >= end:
            break
        ticks.append(pd.Timestamp(t).tz_convert("UTC"))
    bars = session_cycle_times(cfg, "2025-10-27", "2025-11-07")
    assert len(bars) == 10 * 288 and pd.DatetimeIndex(ticks).equals(bars)


def test_the_code_location_is_named_foxlive_however_it_is_started():
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    assert workspace["load_from"] == [{"python_module": {"module_name": "foxlive_dagster.definitions",
                                                         "location_name": "foxlive"}}]
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    assert tool["dagster"] == {"module_name": "foxlive_dagster.definitions", "code_location_name": "foxlive"}
    assert tool["dg"]["project"]["code_location_name"] == "foxlive"
    assert tool["dg"]["project"]["code_location_target_module"] == "foxlive_dagster.definitions"


def test_building_the_definitions_warns_at_most_once_per_warning(env):
    from foxlive_dagster.definitions import build_definitions, warn_beta_once

    warn_beta_once.cache_clear()  # as in a fresh process (the env fixture has built definitions already)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            build_definitions(str(env.config_path), str(env.home))
    texts = [str(w.message) for w in caught]
    assert len(texts) == len(set(texts)), texts
    # Said once, not silenced: single-run replays rely on a beta parameter.
    assert sum("BackfillPolicy" in t for t in texts) == 1


def test_the_resources_are_chosen_per_deployment(tmp_path, monkeypatch):
    """local takes the file and home as given; production takes both from the environment (dg.EnvVar), and
    refuses to load without them or on the simulated market."""
    from foxlive_core.config import load_config
    from foxlive_core.errors import ConfigError
    from foxlive_core.state import StateStore
    from foxlive_dagster.definitions import build_definitions
    from tests.conftest import write_config

    simulated = write_config(tmp_path / "simulated")
    real = write_config(tmp_path / "real", {"market": {"source": "historical", "historical": {"path": str(tmp_path)}}})
    home = tmp_path / "home"
    for name in ("FOXLIVE_CONFIG", "FOXLIVE_HOME", "FOXLIVE_DEPLOYMENT"):
        monkeypatch.delenv(name, raising=False)
    local = build_definitions(str(simulated), str(home))
    assert (local.resources["foxlive"].config_path, local.resources["foxlive"].deployment) == (str(simulated), "local")

    monkeypatch.setenv("FOXLIVE_DEPLOYMENT", "staging")
    with pytest.raises(ConfigError, match="FOXLIVE_DEPLOYMENT='staging' is not a deployment: use one of local, production"):
        build_definitions()
    monkeypatch.setenv("FOXLIVE_DEPLOYMENT", "production")
    with pytest.raises(ConfigError, match="FOXLIVE_CONFIG and FOXLIVE_HOME are not set"):
        build_definitions()
    with pytest.raises(ConfigError, match="but FOXLIVE_HOME is not set"):
        build_definitions(str(real))
    monkeypatch.setenv("FOXLIVE_HOME", str(home))
    monkeypatch.setenv("FOXLIVE_CONFIG", str(simulated))
    with pytest.raises(ConfigError, match="production trades real data.*market.source 'simulated'"):
        build_definitions()

    monkeypatch.setenv("FOXLIVE_CONFIG", str(real))
    defs = build_definitions()
    config = defs.resources["foxlive"]
    assert isinstance(config.config_path, dg.EnvVar) and config.config_path.env_var_name == "FOXLIVE_CONFIG"
    assert isinstance(config.home, dg.EnvVar) and config.deployment == "production"
    # A run resolves the variables in its own process: the halt lands in $FOXLIVE_HOME's state store.
    store = StateStore(load_config(real, home=home).state_path)
    store.create_book("live", 100_000.0)
    result = defs.resolve_job_def("halt_book").execute_in_process(
        run_config={"book": "live", "reason": "deployment check", "actor": "pytest"})
    assert result.success
    assert store.trading_state("live") == ("reducing", "deployment check")

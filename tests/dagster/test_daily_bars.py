"""Daily bars (``bar_interval: 1d``): the code location loads, trains, trades a session's close and replays."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from foxlive_core.config import load_config
from foxlive_dagster.definitions import build_definitions
from foxlive_dagster.partitions import session_cycle_times
from foxlive_dagster.schedules import bar_close_crons, end_of_day_crons
from tests.conftest import SMALL_UNIVERSE, write_config
from tests.dagster.conftest import metadata_values

DAILY = {
    # the simulation starts earlier than the default: the features read 241 daily bars
    "market": {"bar_interval": "1d", "simulated": {"start": "2023-06-01"}},
    "horizons": [{"name": "1d", "sessions": 1}, {"name": "5d", "sessions": 5}],
    # 450 daily sessions: after the features' lookback (241 bars) and the validation rows (25 %), about
    # 90 training rows per symbol.
    "models": {"training": {"sessions": 450}, "lightgbm": {"num_boost_round": 8, "min_data_in_leaf": 20},
               "xgboost": {"num_boost_round": 8}},
}


def test_daily_bars_load_train_trade_a_close_and_replay(tmp_path):
    symbols = list(load_config().symbols[:SMALL_UNIVERSE])
    path = write_config(tmp_path / "cfg", DAILY, symbols=symbols)
    cfg = load_config(path, home=tmp_path / "home")
    defs = build_definitions(str(path), str(tmp_path / "home"))
    dg.Definitions.validate_loadable(defs)
    assert list(session_cycle_times(cfg, "2025-07-02", "2025-07-07")) == [
        pd.Timestamp("2025-07-02T20:00Z"), pd.Timestamp("2025-07-03T17:00Z"), pd.Timestamp("2025-07-07T20:00Z")]
    assert bar_close_crons(cfg) == ["0 13 * * 3-5", "0 16 * * 1-5"]  # the closes, half days' included
    assert end_of_day_crons(cfg) == ["30 13 * * 3-5", "30 16 * * 1-5"]

    with dg.instance_for_test() as instance:
        trained = defs.resolve_job_def("training_job").execute_in_process(
            instance=instance, run_config={"ops": {"trained_models": {"config": {"end": "2025-10-31T20:00Z"}}}})
        assert trained.success
        live = defs.resolve_job_def("trading_cycle_job").execute_in_process(
            instance=instance, partition_key="2025-11-03",
            run_config={"ops": {"market_bars": {"config": {"bar_close": "2025-11-03T21:00Z"}}}})
        assert live.success
        cycle = metadata_values(next(ev.materialization for ev in live.get_asset_materialization_events()
                                     if ev.materialization.asset_key.to_user_string() == "trading_cycle"))
        assert cycle["mode"] == "live" and cycle["cycles"] == 1 and cycle["last_cycle"] == "2025-11-03 21:00:00+00:00"

        replay = dg.materialize(
            [a for a in defs.assets if isinstance(a, dg.AssetsDefinition) and a.key.to_user_string() in
             {"market_bars", "features", "predictions", "trading_cycle", "portfolio_snapshot", "risk_report"}],
            resources=defs.resources, instance=instance,
            tags={"dagster/asset_partition_range_start": "2025-11-04", "dagster/asset_partition_range_end": "2025-11-07"})
        assert replay.success
    from foxlive_core.state import StateStore

    store = StateStore(cfg.state_path)
    assert list(store.cycles(cfg.book)["cycle_time"]) == [pd.Timestamp("2025-11-03T21:00Z")]
    assert list(store.cycles(cfg.replay_book)["cycle_time"]) == [
        pd.Timestamp(f"2025-11-0{d}T21:00Z") for d in (4, 5, 6, 7)]

"""The per-cycle assets: a live cycle per bar of a session partition, their values, metadata and checks;
a range of sessions is one replay."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from foxlive_core.engine import TradingEngine
from foxlive_core.models.store import ModelStore
from foxlive_core.runtime import make_market
from foxlive_core.state import StateStore
from foxlive_dagster.io_managers import load_arrays
from foxlive_dagster.assets import cycle as cycle_module
from tests.dagster.conftest import B1, B2, CYCLE_ASSETS, S1, bar_config, metadata_values, step_failure

RANGE = ("2025-05-01", "2025-05-02")  # two sessions: 78 + 78 cycles
RANGE_TAGS = {
    "dagster/asset_partition_range_start": RANGE[0],
    "dagster/asset_partition_range_end": RANGE[1],
    "dagster/backfill": "pytest-backfill",
}


def _by_key(result) -> dict:
    return {ev.materialization.asset_key.to_user_string(): ev.materialization
            for ev in result.get_asset_materialization_events()}


def _checks(result) -> dict:
    return {ev.check_name: ev for ev in result.get_asset_check_evaluations()}


def test_one_bar_of_a_session_partition_is_one_live_cycle(module_env, module_instance):
    env = module_env
    result = env.live_cycle(module_instance, B1)
    assert result.success
    mats = _by_key(result)
    assert set(mats) == set(CYCLE_ASSETS)
    n = len(env.cfg.symbols)

    bars = metadata_values(mats["market_bars"])
    assert bars["cycles"] == 1 and bars["symbols"] == n
    assert bars["last_cycle"] == str(pd.Timestamp("2025-05-01T13:35Z"))
    assert bars["bars"] >= env.cfg.engine.history_bars
    feats = metadata_values(mats["features"])
    assert feats["features"] > 0 and 0.9 <= feats["coverage"] <= 1.0
    preds = metadata_values(mats["predictions"])
    assert preds["model_run_id"] == env.run_id and preds["symbols"] == n

    cycle = metadata_values(mats["trading_cycle"])
    assert cycle["book"] == env.cfg.book and cycle["mode"] == "live" and cycle["cycles"] == 1
    assert cycle["trades"] + cycle["holds"] + cycle["blocked"] == n
    assert cycle["model_run_id"] == env.run_id
    orders = mats["trading_cycle"].metadata["last_cycle_orders_and_fills"]
    assert isinstance(orders, dg.TableMetadataValue)
    assert [c.name for c in orders.schema.columns][:3] == ["client_order_id", "symbol", "side"]
    assert len(orders.records) == cycle["orders"]
    assert cycle["portfolio_value"] == pytest.approx(env.cfg.broker.starting_cash, rel=0.01)
    assert cycle["session"] == S1
    assert "```" in cycle["top_decisions_explained"]
    # The run is bound to its book and bar (the kill switch finds it by these, however it was launched).
    run = module_instance.get_run_by_id(result.run_id)
    assert run.tags["foxlive/book"] == env.cfg.book and run.tags["foxlive/bar_close"] == B1

    snap = metadata_values(mats["portfolio_snapshot"])
    assert snap["book"] == env.cfg.book and snap["portfolio_value"] == pytest.approx(cycle["portfolio_value"])
    risk = metadata_values(mats["risk_report"])
    assert risk["cycles_in_book"] == 1 and risk["halted"] is False
    assert mats["risk_report"].metadata["equity_curve"].value.startswith("![")

    checks = _checks(result)
    assert checks["market_data_fresh"].passed
    assert checks["market_data_fresh"].metadata["fresh_share"].value >= 0.5
    for name in ("gross_exposure_within_limit", "position_limit", "drawdown_within_limit", "daily_loss_within_limit"):
        assert name in checks, name
        assert checks[name].passed, name

    # The stored values (npz, no pickle) are what the downstream assets read.
    stored = load_arrays(env.home / "dagster_values" / "trading_cycle" / f"{S1}__{S1}.npz")
    assert stored["book"] == env.cfg.book and stored["mode"] == "live"
    np.testing.assert_allclose(stored["portfolio_value"], [cycle["portfolio_value"]])


def test_the_next_bar_continues_the_live_book_in_the_same_partition(module_env, module_instance):
    env = module_env
    result = env.live_cycle(module_instance, B2)
    assert result.success
    cycle = metadata_values(_by_key(result)["trading_cycle"])
    assert cycle["mode"] == "live" and cycle["last_cycle"] == str(pd.Timestamp("2025-05-01T13:40Z"))
    store = env.store()
    cycles = store.cycles(env.cfg.book)
    assert len(cycles) == 2
    assert list(cycles["cycle_time"]) == [pd.Timestamp("2025-05-01T13:35Z"), pd.Timestamp("2025-05-01T13:40Z")]
    assert cycles["portfolio_value"].iloc[-1] == pytest.approx(cycle["portfolio_value"])
    assert metadata_values(_by_key(result)["risk_report"])["cycles_in_book"] == 2
    assert store.load(env.cfg.book).cycle_count == 2


def test_a_bar_already_run_is_refused(module_env, module_instance):
    env = module_env
    result = env.live_cycle(module_instance, B2, raise_on_error=False)
    assert not result.success
    assert "already" in step_failure(result, "trading_cycle")
    assert len(env.store().cycles(env.cfg.book)) == 2


def test_a_backfill_range_is_one_replay_equal_to_engine_replay(module_env, module_instance):
    env = module_env
    live_before = env.store().cycles(env.cfg.book)
    result = env.materialize_cycle(module_instance, tags=RANGE_TAGS)
    assert result.success
    mats = _by_key(result)
    cycle = metadata_values(mats["trading_cycle"])
    assert cycle["book"] == env.cfg.replay_book and cycle["mode"] == "replay"
    assert cycle["cycles"] == 156 and cycle["sessions"] == 2 and cycle["range"] == "2025-05-01 .. 2025-05-02"
    assert cycle["orders"] > 0
    # One materialisation of each asset per session of the range, not one per bar.
    assert [ev.materialization.partition for ev in result.get_asset_materialization_events()
            if ev.materialization.asset_key.to_user_string() == "trading_cycle"] == list(RANGE)

    # The same range replayed by the engine on another book: number for number.
    cfg = env.cfg
    models = ModelStore(cfg.models_root).load_active(cfg)
    engine = TradingEngine(cfg, make_market(cfg), models, StateStore(cfg.state_path))
    times = engine.cycle_times("2025-05-01T13:35Z", "2025-05-02T20:00Z")
    assert len(times) == 156
    engine.replay("engine_replay", times[0], times[-1], chunk_sessions=1)  # batched differently from the run
    store = env.store()
    cols = ["cycle_time", "portfolio_value", "cash", "gross_exposure", "net_exposure", "drawdown", "daily_return",
            "n_trade", "n_hold", "n_blocked", "n_orders", "n_fills", "fees", "traded_notional", "halted"]
    ours = store.cycles(cfg.replay_book)[cols].reset_index(drop=True)
    ref = store.cycles("engine_replay")[cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(ours, ref, check_exact=True)
    da = store.decisions(cfg.replay_book)
    db = store.decisions("engine_replay")
    pd.testing.assert_frame_equal(da, db, check_exact=True)
    assert metadata_values(mats["portfolio_snapshot"])["portfolio_value"] == pytest.approx(ref["portfolio_value"].iloc[-1])
    assert metadata_values(mats["risk_report"])["cycles_in_book"] == 156

    # The run's metadata holds the range: every order and fill, a row per session, the top trades explained.
    orders = mats["trading_cycle"].metadata["range_orders_and_fills"]
    ref_orders = store.orders("engine_replay")
    assert cycle["orders_in_range"] == len(orders.records) == len(ref_orders) == ref["n_orders"].sum()
    assert [r.data["client_order_id"] for r in orders.records] == [
        c.replace("engine_replay", cfg.replay_book) for c in ref_orders["client_order_id"]]
    sessions = mats["trading_cycle"].metadata["range_sessions"].records
    assert [r.data["session"] for r in sessions] == list(RANGE)
    assert [r.data["cycles"] for r in sessions] == [78, 78]
    assert sum(r.data["orders"] for r in sessions) == ref["n_orders"].sum()
    assert sessions[-1].data["end_value"] == pytest.approx(ref["portfolio_value"].iloc[-1])
    top = mats["trading_cycle"].metadata["range_top_trades_by_abs_alpha"].records
    trades = db[db["decision"] == "TRADE"]
    assert len(top) == min(5, len(trades))
    assert abs(top[0].data["alpha_bps"]) == pytest.approx(trades["alpha_bps"].abs().max(), rel=1e-6)
    assert cycle["range_top_trades_explained"].count("```") == 2 * len(top)

    # The live book is untouched.
    pd.testing.assert_frame_equal(store.cycles(cfg.book), live_before)


def test_a_backfill_never_trades_the_live_book(module_env, module_instance):
    env = module_env
    tags = {**RANGE_TAGS, "dagster/asset_partition_range_end": RANGE[0]}
    result = env.materialize_cycle(
        module_instance, tags=tags, raise_on_error=False,
        run_config={"ops": {"trading_cycle": {"config": {"book": env.cfg.book}}}},
    )
    assert not result.success
    assert "is the live book" in step_failure(result, "trading_cycle")
    assert len(env.store().cycles(env.cfg.book)) == 2


def test_end_of_day_report_of_the_live_book(module_env, module_instance):
    env = module_env
    report = env.assets(["end_of_day_report"])
    result = dg.materialize(report, partition_key="2025-05-01", resources=env.resources, instance=module_instance)
    meta = metadata_values(result.get_asset_materialization_events()[0].materialization)
    live = env.store().cycles(env.cfg.book)
    assert meta["book"] == env.cfg.book and meta["cycles"] == len(live) == 2
    assert meta["fees"] == pytest.approx(live["fees"].sum())
    assert meta["halted_at_close"] is False
    # The session's report (foxlive_core.reports): figures, the printed table, the JSON and inline plots.
    assert meta["periods"] == 2 and meta["bar_interval"] == "5m"
    assert meta["pnl"] == pytest.approx(live["portfolio_value"].iloc[-1] - env.cfg.broker.starting_cash)
    assert meta["costs_total"] == pytest.approx(meta["costs_spread"] + meta["costs_slippage"] + meta["costs_fees"])
    assert meta["costs_impact"] == 0.0 and meta["traded_notional"] == pytest.approx(live["traded_notional"].sum())
    assert "book live: 2 cycles of 5m bars" in meta["report"] and meta["report_json"]["periods"] == 2
    assert meta["equity_plot"].startswith("![live equity](data:image/png;base64,")
    empty = dg.materialize(report, partition_key="2025-05-05", resources=env.resources, instance=module_instance)
    assert metadata_values(empty.get_asset_materialization_events()[0].materialization)["cycles"] == 0


def test_a_per_partition_backfill_run_is_refused(module_env, module_instance):
    """Job backfills ignore the single-run policy: each partition's run would restart the replay book."""
    env = module_env
    replay_before = env.store().cycles(env.cfg.replay_book)
    result = env.job("trading_cycle_job").execute_in_process(
        partition_key="2025-05-02", instance=module_instance, raise_on_error=False,
        tags={"dagster/backfill": "job-backfill"},
    )
    assert not result.success
    assert "asset backfill" in step_failure(result, "trading_cycle")
    pd.testing.assert_frame_equal(env.store().cycles(env.cfg.replay_book), replay_before)


def test_a_live_run_without_a_bar_trades_the_sessions_newest_closed_bar(env, instance, monkeypatch):
    monkeypatch.setattr(cycle_module, "_now", lambda: pd.Timestamp("2025-05-01T15:02:30Z"))  # 11:02:30 ET
    result = env.materialize_cycle(instance, S1)
    assert result.success
    assert list(env.store().cycles(env.cfg.book)["cycle_time"]) == [pd.Timestamp("2025-05-01T15:00Z")]
    assert instance.get_run_by_id(result.run_id).tags["foxlive/bar_close"] == "2025-05-01T15:00:00+00:00"

    monkeypatch.setattr(cycle_module, "_now", lambda: pd.Timestamp("2025-05-01T13:31Z"))  # before the first close
    early = env.materialize_cycle(instance, S1, raise_on_error=False)
    assert "no bar of session 2025-05-01 has closed yet" in step_failure(early, "market_bars")


@pytest.mark.parametrize("bar, message", [
    ("2025-05-02T13:35Z", "not a 5m bar close of session 2025-05-01"),   # the next session's bar
    ("2025-05-01T13:37Z", "not a 5m bar close of session 2025-05-01"),   # between two closes
    ("2025-05-01T13:35", "timezone-naive"),
    ("2025-05-01T16:00Z", "has not closed yet"),                          # after the patched clock
])
def test_a_live_run_refuses_a_bar_its_session_does_not_close_by_now(env, instance, monkeypatch, bar, message):
    monkeypatch.setattr(cycle_module, "_now", lambda: pd.Timestamp("2025-05-01T15:02Z"))
    result = dg.materialize(env.assets(), partition_key=S1, resources=env.resources, instance=instance,
                            run_config=bar_config(bar), raise_on_error=False)
    assert message in step_failure(result, "market_bars")
    assert not env.store().exists(env.cfg.book) or len(env.store().cycles(env.cfg.book)) == 0


def test_a_backfill_takes_no_bar(env, instance):
    result = env.materialize_cycle(instance, tags={**RANGE_TAGS, "dagster/asset_partition_range_end": RANGE[0]},
                                   run_config=bar_config(B1), raise_on_error=False)
    assert "a backfill replays every bar of its sessions" in step_failure(result, "market_bars")

"""Jobs: a trading cycle, training, the end-of-day report; halt/resume live in kill_switch.py."""

from __future__ import annotations

import dagster as dg

CYCLE_ASSETS = ["market_bars", "features", "predictions", "trading_cycle", "portfolio_snapshot", "risk_report"]

trading_cycle_job = dg.define_asset_job(
    "trading_cycle_job",
    selection=dg.AssetSelection.assets(*CYCLE_ASSETS),
    description="One trading cycle of the live book (a partition = one bar); backfills replay on the replay book.",
)
training_job = dg.define_asset_job(
    "training_job",
    selection=dg.AssetSelection.assets("trained_models", "active_models"),
    description="Train every horizon's models and activate the new run.",
)
end_of_day_job = dg.define_asset_job(
    "end_of_day_job",
    selection=dg.AssetSelection.assets("end_of_day_report"),
    description="The live book's end-of-day report.",
)

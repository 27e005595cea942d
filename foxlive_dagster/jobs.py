"""Jobs: a trading cycle, training, the end-of-day report, a replay sweep; halt/resume live in kill_switch.py.

The cycle and report jobs run their steps in the run's own process (``in_process_executor``, also the
code location's default, so UI materialisations of the cycle assets run the same way): a live cycle's
six steps take seconds of work, and a process per step cost about 10 s of start-up each. Training and a
replay sweep fan out, a step per model or per variant, on the deployment's scale-out executor (executors.py).
"""

from __future__ import annotations

import dagster as dg

CYCLE_ASSETS = ["market_bars", "features", "predictions", "trading_cycle", "portfolio_snapshot", "risk_report"]

trading_cycle_job = dg.define_asset_job(
    "trading_cycle_job",
    selection=dg.AssetSelection.assets(*CYCLE_ASSETS),
    executor_def=dg.in_process_executor,
    description="A live cycle of the live book at one bar close (a partition = one session; market_bars config "
    "bar_close names the bar); an asset backfill over sessions replays them on the replay book in one run.",
)


def build_training_job(executor: dg.ExecutorDefinition) -> dg.UnresolvedAssetJobDefinition:
    """``training_job`` on ``executor``: the deployment's scale-out executor (executors.py)."""
    return dg.define_asset_job(
        "training_job",
        selection=dg.AssetSelection.assets("trained_models", "active_models"),
        executor_def=executor,
        description="Train every horizon's models, a step per model on the scale-out executor, and activate the "
        "new run.",
    )


def build_sweep_job(executor: dg.ExecutorDefinition) -> dg.UnresolvedAssetJobDefinition:
    """``replay_sweep_job`` on ``executor``: a step per variant of the sweep file."""
    return dg.define_asset_job(
        "replay_sweep_job",
        selection=dg.AssetSelection.assets("replay_sweep"),
        executor_def=executor,
        description="Replay one range under every variant of the sweep file (paths.sweep), a step per variant on "
        "the scale-out executor, and compare them.",
    )


end_of_day_job = dg.define_asset_job(
    "end_of_day_job",
    selection=dg.AssetSelection.assets("end_of_day_report"),
    executor_def=dg.in_process_executor,
    description="The live book's end-of-day report.",
)

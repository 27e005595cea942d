"""``replay_sweep``: one range replayed under every variant of the sweep file, a step per variant.

Bound to the kill switch through the core: the first step refuses the sweep while a variant book is
halted, and a halt set during the sweep binds that variant's replay from its next commit (foxlive_core.sweep).

The steps run in parallel on the deployment's scale-out executor (executors.py); each replays its
variant on its own book with the model run the first step pinned, so the comparison equals
``foxlive sweep`` (foxlive_core.sweep) however the steps were spread.
"""

import dagster as dg
import pandas as pd

from foxlive_core.config import FoxliveConfig
from foxlive_core.models.store import ModelStore
from foxlive_core.runtime import resolve_bar
from foxlive_core.state import StateStore
from foxlive_core.sweep import (SweepVariant, comparison, load_sweep, refuse_halted_books, replay_variant,
                                variant_summary)
from foxlive_dagster.metadata import table
from foxlive_dagster.resources import FoxliveConfigResource, MarketDataResource


class SweepConfig(dg.Config):
    """``start``/``end``: the range to replay (ISO 8601 with zone, or a session date: its first bar / its close)."""

    start: str
    end: str


@dg.op(description="Resolve the range and pin the active model run for every variant.")
def pin_sweep(config: SweepConfig, foxlive: FoxliveConfigResource, market: MarketDataResource) -> dict:
    cfg = foxlive.get()
    source = market.get()
    start = resolve_bar(source, pd.Timestamp(config.start), end_of_day=False)
    end = resolve_bar(source, pd.Timestamp(config.end), end_of_day=True)
    if start > end:
        raise dg.Failure(f"sweep start {start} is after its end {end}; give start <= end")
    StateStore(cfg.state_path)  # the schema exists before the variants' processes open the store at once
    refuse_halted_books(cfg, load_sweep(cfg))
    return {"start": start.isoformat(), "end": end.isoformat(), "run_id": ModelStore(cfg.models_root).active_run_id()}


def _replay_op(variant: SweepVariant) -> dg.OpDefinition:
    @dg.op(name=f"replay_{variant.name}", out=dg.Out(dg.Nothing), tags={"foxlive/book": variant.book},
           description=f"Replay the pinned range under variant {variant.name} on book {variant.book}.")
    def replay(context: dg.OpExecutionContext, pinned: dict, foxlive: FoxliveConfigResource) -> None:
        summary = replay_variant(foxlive.get(), variant, *_range(pinned), pinned["run_id"])
        context.log.info(f"{variant.name}: P&L {summary['pnl']:+,.2f}, {summary['orders']} orders")

    return replay


def _range(pinned: dict) -> tuple[pd.Timestamp, pd.Timestamp]:
    return pd.Timestamp(pinned["start"]), pd.Timestamp(pinned["end"])


# The replays hand their results over through the state store, not as op outputs: dagster-dask executes a
# step alone, and a fan-in of values from steps run elsewhere then arrives empty.
@dg.op(ins={"pinned": dg.In(dict), "replayed": dg.In(dg.Nothing)}, out=dg.Out(io_manager_key="cycle_io_manager"),
       description="The variants side by side, read from their books.")
def compare_sweep(pinned: dict, foxlive: FoxliveConfigResource) -> dg.Output:
    cfg = foxlive.get()
    results = {v.name: variant_summary(cfg, v, *_range(pinned), pinned["run_id"]) for v in load_sweep(cfg)}
    return dg.Output(
        {**pinned, "variants": results},
        metadata={"run_id": pinned["run_id"], "range": f"{pinned['start']} .. {pinned['end']}",
                  "variants": len(results), "comparison": table(comparison(results))},
    )


def build_sweep_assets(cfg: FoxliveConfig) -> list:
    """``replay_sweep`` for the variants of ``cfg``'s sweep file; none without one."""
    variants = load_sweep(cfg)
    if not variants:
        return []
    replays = [_replay_op(v) for v in variants]

    @dg.graph_asset(
        name="replay_sweep", group_name="research", kinds={"python"},
        config=dg.ConfigMapping(
            config_fn=lambda c: {"pin_sweep": {"config": {"start": c["start"], "end": c["end"]}}},
            config_schema={"start": dg.Field(str, description=SweepConfig.__doc__), "end": dg.Field(str)},
        ),
        description=f"The same range replayed under {len(variants)} configurations ({', '.join(v.name for v in variants)}), "
        "each on book sweep_<variant>, compared.",
    )
    def replay_sweep():
        pinned = pin_sweep()
        return compare_sweep(pinned, [replay(pinned) for replay in replays])

    return [replay_sweep]

"""Model assets: a training run, and the verified run that live trading uses."""


import dagster as dg
import pandas as pd

from foxlive_core.models.training import train_models
from foxlive_dagster.metadata import table
from foxlive_dagster.resources import FoxliveConfigResource, MarketDataResource, ModelStoreResource

GROUP = "models"


class TrainingConfig(dg.Config):
    """``end``: last bar of the training window (ISO 8601 with zone); empty = the newest data."""

    end: str = ""


@dg.asset(group_name=GROUP, kinds={"lightgbm", "xgboost", "python"}, io_manager_key="cycle_io_manager")
def trained_models(
    context: dg.AssetExecutionContext, config: TrainingConfig, foxlive: FoxliveConfigResource, market: MarketDataResource
) -> dg.MaterializeResult:
    """Every horizon's return models (one per family) and barrier classifiers, trained on market history."""
    cfg = foxlive.get()
    end = pd.Timestamp(config.end) if config.end else None
    result = train_models(cfg, market.get(), end, activate=False, progress=False)
    metrics = result.metrics_table()
    returns = metrics[metrics["kind"].isin(cfg.models.families)]
    barriers = metrics[~metrics["kind"].isin(cfg.models.families)]
    importance: dict[str, float] = {}
    for m in result.manifest["models"]:
        for rank, name in enumerate(m["top_features"]):
            importance[name] = importance.get(name, 0.0) + (10 - rank)
    top = sorted(importance.items(), key=lambda kv: -kv[1])[:10]
    context.log.info(f"trained run {result.run_id}: {len(metrics)} models")
    return dg.MaterializeResult(
        value={"run_id": result.run_id},
        metadata={
            "run_id": result.run_id,
            "artifact_path": dg.MetadataValue.path(str(result.run_dir)),
            "models": len(metrics),
            # Per-bar ICs across symbols with t on non-overlapping bars; empty cells are n/a (under 5 symbols).
            "validation_ic": table(returns[["horizon", "family", "rank_ic", "rank_ic_t", "ic", "ic_t", "ic_ir",
                                            "independent_bars", "pooled_ic", "top_symbol", "top_symbol_share",
                                            "pooled_ic_without_top_symbol", "n_train", "n_validation"]]),
            "barrier_auc": table(barriers[["horizon", "kind", "family", "auc", "base_rate"]]),
            "mean_rank_ic": float(pd.to_numeric(returns["rank_ic"]).mean()) if returns["rank_ic"].notna().any() else None,
            "feature_importance_top10": dg.MetadataValue.md(
                "| feature | score |\n|---|---|\n" + "\n".join(f"| {n} | {v:.0f} |" for n, v in top)
            ),
            "data_window": f"{result.manifest['data_window']['start']} .. {result.manifest['data_window']['end']}",
        },
    )


class ActivationConfig(dg.Config):
    """``run_id``: the run to activate (e.g. a rollback); empty = the newest ``trained_models`` materialisation's run."""

    run_id: str = ""


def _latest_trained_run(context: dg.AssetExecutionContext) -> str:
    # A dependency, not an input: activating a named run (a rollback, a fresh deployment) must not need a
    # stored trained_models value; the run just trained is the newest materialisation's run_id.
    event = context.instance.get_latest_materialization_event(dg.AssetKey("trained_models"))
    run_id = event.asset_materialization.metadata.get("run_id") if event and event.asset_materialization else None
    if run_id is None:
        raise dg.Failure("no trained_models materialisation to activate; materialise trained_models first, "
                         "or give active_models a run_id")
    return str(run_id.value)


@dg.asset(group_name=GROUP, kinds={"python"}, io_manager_key="cycle_io_manager", deps=[trained_models])
def active_models(
    context: dg.AssetExecutionContext, config: ActivationConfig,
    foxlive: FoxliveConfigResource, models: ModelStoreResource,
) -> dg.MaterializeResult:
    """The validated model run live trading uses: every checksum verified, the activation recorded."""
    cfg = foxlive.get()
    store = models.store()
    previous = store.active_run()
    run_id = config.run_id or _latest_trained_run(context)
    record = store.activate(run_id, by=f"dagster run {context.run.run_id}", reason="active_models materialisation", cfg=cfg)
    manifest = store.manifest(run_id)
    checks = pd.DataFrame(
        [{"horizon": m["horizon"], "kind": m["kind"], "family": m["family"], "sha256": m["sha256"][:16]} for m in manifest["models"]]
    )
    return dg.MaterializeResult(
        value={"run_id": run_id},
        metadata={
            "run_id": run_id,
            "previous_run_id": (previous or {}).get("run_id", ""),
            "activated_by": record["activated_by"],
            "activated_at": record["activated_at"],
            "checksums_verified": table(checks),
            "models": len(checks),
        },
    )

"""Model assets: a training run, fanned out per model, and the verified run that live trading uses."""


import dagster as dg
import pandas as pd

from foxlive_core.models.training import (TrainingResult, TrainingTask, assemble_training, fit_training_task,
                                          prepare_training, training_tasks)
from foxlive_dagster.metadata import table
from foxlive_dagster.resources import FoxliveConfigResource, MarketDataResource, ModelStoreResource

GROUP = "models"


class TrainingConfig(dg.Config):
    """``end``: last bar of the training window (ISO 8601 with zone); empty = the newest data."""

    end: str = ""


def training_metadata(cfg, result: TrainingResult) -> dict:
    """What a training run shows in the UI: its validation ICs, barrier AUCs and feature importance."""
    metrics = result.metrics_table()
    returns = metrics[metrics["kind"].isin(cfg.models.families)]
    barriers = metrics[~metrics["kind"].isin(cfg.models.families)]
    importance: dict[str, float] = {}
    for m in result.manifest["models"]:
        for rank, name in enumerate(m["top_features"]):
            importance[name] = importance.get(name, 0.0) + (10 - rank)
    top = sorted(importance.items(), key=lambda kv: -kv[1])[:10]
    return {
        "run_id": result.run_id,
        "artifact_path": dg.MetadataValue.path(str(result.run_dir)),
        "models": len(metrics),
        # Per-bar ICs across symbols with t on non-overlapping bars; empty cells are n/a (under 5 symbols).
        "validation_ic": table(returns[["horizon", "family", "rank_ic", "rank_ic_t", "ic", "ic_t", "ic_ir",
                                        "independent_bars", "pooled_ic", "top_symbol", "top_symbol_share",
                                        "pooled_ic_without_top_symbol", "n_train", "n_validation"]]),
        "barrier_auc": table(barriers[["horizon", "kind", "family", "auc", "base_rate"]]),
        # The prior each horizon's calibration slope starts from (fit_calibration): OLS, Newey-West s.e., shrunk.
        "calibration_prior": table(result.calibration_table()),
        "mean_rank_ic": float(pd.to_numeric(returns["rank_ic"]).mean()) if returns["rank_ic"].notna().any() else None,
        "feature_importance_top10": dg.MetadataValue.md(
            "| feature | score |\n|---|---|\n" + "\n".join(f"| {n} | {v:.0f} |" for n, v in top)
        ),
        "data_window": f"{result.manifest['data_window']['start']} .. {result.manifest['data_window']['end']}",
    }


@dg.op(description="Load the training window's bars and build its features once, for every model's step.")
def prepare_training_data(config: TrainingConfig, foxlive: FoxliveConfigResource, market: MarketDataResource) -> str:
    """The run id of the prepared training (its data set is in the models root's temporary run directory)."""
    end = pd.Timestamp(config.end) if config.end else None
    return prepare_training(foxlive.get(), market.get(), end)


def _fit_op(task: TrainingTask) -> dg.OpDefinition:
    @dg.op(name=f"fit_{task.key}", out=dg.Out(dg.Nothing), tags={"foxlive/model": f"{task.horizon}/{task.kind}"},
           description=f"Fit the {task.horizon} {task.kind} model of the prepared run.")
    def fit(context: dg.OpExecutionContext, run_id: str, foxlive: FoxliveConfigResource) -> None:
        entry = fit_training_task(foxlive.get(), run_id, task)
        context.log.info(f"{task.horizon}/{task.kind}: {entry['n_train']} training rows, validation {entry['metrics']}")

    return fit


@dg.op(ins={"run_id": dg.In(str), "fitted": dg.In(dg.Nothing)}, out=dg.Out(io_manager_key="cycle_io_manager"),
       description="Fit each horizon's calibration prior, write the manifest and move the run into place.")
def assemble_training_run(context: dg.OpExecutionContext, run_id: str, foxlive: FoxliveConfigResource):
    cfg = foxlive.get()
    result = assemble_training(cfg, run_id)
    context.log.info(f"trained run {result.run_id}: {len(result.manifest['models'])} models")
    return dg.Output({"run_id": result.run_id}, metadata=training_metadata(cfg, result))


def build_training_asset(cfg) -> dg.AssetsDefinition:
    """``trained_models``: one step prepares the data, one step per model fits it (in parallel on a
    multi-process or distributed executor), one step assembles the run; the run equals ``foxlive train``'s."""
    fits = [_fit_op(task) for task in training_tasks(cfg)]

    @dg.graph_asset(
        name="trained_models", group_name=GROUP, kinds={"lightgbm", "xgboost", "python"},
        config=dg.ConfigMapping(
            config_fn=lambda c: {"prepare_training_data": {"config": {"end": c["end"]}}},
            config_schema={"end": dg.Field(str, default_value="", description=TrainingConfig.__doc__)},
        ),
        description="Every horizon's return models (one per family) and barrier classifiers, trained on market history.",
    )
    def trained_models():
        run_id = prepare_training_data()
        return assemble_training_run(run_id, [fit(run_id) for fit in fits])

    return trained_models


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


@dg.asset(group_name=GROUP, kinds={"python"}, io_manager_key="cycle_io_manager", deps=["trained_models"])
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

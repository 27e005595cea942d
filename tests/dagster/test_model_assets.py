"""trained_models -> active_models: a training run with its metrics, then its verified activation."""

from __future__ import annotations

import json

import dagster as dg

from foxlive_core.models.store import ModelStore
from tests.conftest import SMALL_TRAIN_END
from tests.dagster.conftest import make_env, metadata_values, step_failure

TINY_TRAINING = {
    "models": {"training": {"sessions": 8}, "lightgbm": {"num_boost_round": 8}, "xgboost": {"num_boost_round": 8}},
}


def test_training_then_activation(small_run, tmp_path, instance):
    env = make_env(tmp_path, small_run, TINY_TRAINING)
    assert env.cfg.models.training.sessions == 8
    assets = env.assets(["trained_models", "active_models"])
    result = dg.materialize(
        assets, resources=env.resources, instance=instance,
        run_config={"ops": {"trained_models": {"config": {"end": SMALL_TRAIN_END}}}},
    )
    assert result.success
    mats = {ev.materialization.asset_key.to_user_string(): ev.materialization
            for ev in result.get_asset_materialization_events()}
    trained = metadata_values(mats["trained_models"])
    run_id = trained["run_id"]
    assert run_id != env.run_id
    families = env.cfg.models.families
    ic = mats["trained_models"].metadata["validation_ic"]
    assert isinstance(ic, dg.TableMetadataValue)
    assert len(ic.records) == len(env.cfg.horizons) * len(families)
    assert {c.name for c in ic.schema.columns} >= {"horizon", "family", "ic", "rank_ic"}
    assert trained["models"] >= len(ic.records)
    assert "2025-04-30" in trained["data_window"]
    assert "| feature | score |" in trained["feature_importance_top10"]

    active = metadata_values(mats["active_models"])
    assert active["run_id"] == run_id and active["previous_run_id"] == env.run_id
    assert result.run_id in active["activated_by"]
    checks = mats["active_models"].metadata["checksums_verified"]
    manifest = ModelStore(env.cfg.models_root).manifest(run_id)
    assert len(checks.records) == len(manifest["models"]) == active["models"]
    assert {r.data["sha256"] for r in checks.records} == {m["sha256"][:16] for m in manifest["models"]}
    record = json.loads((env.cfg.models_root / "active.json").read_text())
    assert record["run_id"] == run_id

    # Rolling back: active_models alone with a run id re-activates the previous run.
    rollback = dg.materialize(
        assets, selection=["active_models"], resources=env.resources, instance=instance,
        run_config={"ops": {"active_models": {"config": {"run_id": env.run_id}}}},
    )
    assert rollback.success
    assert ModelStore(env.cfg.models_root).active_run()["run_id"] == env.run_id


def test_activation_needs_no_stored_training_value(env, instance):
    """A fresh deployment: activate a named run, and refuse one that does not exist."""
    assets = env.assets(["trained_models", "active_models"])
    missing = dg.materialize(
        assets, selection=["active_models"], resources=env.resources, instance=instance, raise_on_error=False,
        run_config={"ops": {"active_models": {"config": {"run_id": "20990101T000000000000Z"}}}},
    )
    assert not missing.success
    assert "20990101T000000000000Z" in step_failure(missing, "active_models")
    assert ModelStore(env.cfg.models_root).active_run()["run_id"] == env.run_id
    nothing = dg.materialize(assets, selection=["active_models"], resources=env.resources, instance=instance,
                             raise_on_error=False)
    assert "materialise trained_models first" in step_failure(nothing, "active_models")
    named = dg.materialize(
        assets, selection=["active_models"], resources=env.resources, instance=instance,
        run_config={"ops": {"active_models": {"config": {"run_id": env.run_id}}}},
    )
    meta = metadata_values(named.get_asset_materialization_events()[0].materialization)
    assert meta["run_id"] == meta["previous_run_id"] == env.run_id

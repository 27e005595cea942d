"""Training, artifacts, verified loading and inference of the model families."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from foxlive_core.errors import ModelError
from foxlive_core.features import FEATURE_NAMES
from foxlive_core.models.store import ModelStore, content_digest, write_json_atomic
from foxlive_core.models.targets import barrier_labels, forward_returns


@pytest.fixture
def trained(small_run):
    return small_run


def test_run_layout_and_metadata(trained):
    cfg, _, result = trained
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert len(manifest["models"]) == 6 * (3 + 2)
    meta = json.loads((result.run_dir / "30m" / "xgboost" / "model_meta.json").read_text())
    assert meta["family"] == "xgboost" and meta["horizon"] == "30m" and meta["horizon_bars"] == 6
    assert meta["target"] == "fwd_return_6b"
    assert meta["feature_list"] == list(FEATURE_NAMES) and meta["n_features"] == len(FEATURE_NAMES)
    assert meta["interval_minutes"] == 5 and meta["bar_interval"] == "5m"
    assert set(meta["metrics"]) >= {"ic", "rank_ic", "ic_ir"}
    assert {"numpy", "lightgbm", "xgboost"} <= set(meta["package_versions"])
    assert (result.run_dir / "30m" / "lightgbm" / "model.txt").is_file()
    assert (result.run_dir / "30m" / "ridge" / "model.json").is_file()
    assert not list(result.run_dir.rglob("*.pkl")) and not list(result.run_dir.rglob("*.pickle"))
    # The purge gap: the last training bar plus the horizon ends before validation starts.
    bars = cfg.market.interval_minutes
    gap = pd.Timestamp(meta["validation_window"]["start"]) - pd.Timestamp(meta["train_window"]["end"])
    assert gap >= pd.Timedelta(minutes=bars * meta["horizon_bars"])
    assert ModelStore(cfg.models_root).active_run()["run_id"] == result.run_id


def test_validation_ic_is_positive_where_the_signal_is_planted(trained):
    _, _, result = trained
    table = result.metrics_table()
    returns = table[table["kind"].isin(["lightgbm", "xgboost", "ridge"])]
    # The simulator plants a short-horizon reversal: the 5m-15m models must find it out of sample.
    for horizon in ("5m", "10m", "15m"):
        assert returns[returns["horizon"] == horizon]["rank_ic"].mean() > 0.02, horizon


def test_the_calibration_prior_is_reported_per_horizon_as_fitted_and_shrunk(trained):
    from foxlive_core.cli import training_text

    cfg, _, result = trained
    table = result.calibration_table().set_index("horizon")
    assert set(table.index) == set(cfg.horizon_names)
    for horizon, row in table.iterrows():
        assert row["slope_se"] > 0 and row["pairs"] > 0
        # positive-part James-Stein, recomputed here from the fitted slope and its error
        factor = max(0.0, 1.0 - (row["slope_se"] / row["slope_ols"]) ** 2)
        assert row["shrinkage"] == pytest.approx(factor) and row["kappa0"] == pytest.approx(row["slope_ols"] * factor)
    # the planted 5m reversal is found on the validation rows: its prior is kept, not shrunk away
    assert table.loc["5m", "shrinkage"] > 0.5
    assert "calibration prior per horizon" in training_text(result, cfg.models.families)


def test_barrier_classifiers_beat_chance(trained):
    table = trained[2].metrics_table()
    assert (table.loc[table["kind"].str.startswith("barrier"), "auc"] > 0.5).all()


def test_load_and_predict_shapes(trained):
    cfg, market, result = trained
    models = ModelStore(cfg.models_root).load(result.run_id, cfg)
    X = np.random.default_rng(0).normal(size=(7, len(FEATURE_NAMES)))
    X[3, 5] = np.nan
    pred = models.predict(X)
    assert pred.shape == (6, 3, 7)
    assert np.isnan(pred[:, :, 3]).all() and np.isfinite(np.delete(pred, 3, axis=2)).all()
    barrier = models.predict_barriers(X)
    assert barrier.shape == (6, 2, 7)
    finite = np.delete(barrier, 3, axis=2)
    assert ((finite >= 0) & (finite <= 1)).all()
    assert models.bps_scale.shape == (3, 6) and (models.bps_scale > 0).all()
    # Longer horizons have wider forward-return distributions.
    assert models.bps_scale[0, -1] > models.bps_scale[0, 0]
    # A prediction does not depend on which other rows are predicted with it.
    assert np.array_equal(models.predict(X[5:6]), pred[:, :, 5:6])


@pytest.fixture
def run_copy(trained, tmp_path):
    cfg, _, result = trained
    root = tmp_path / "models"
    shutil.copytree(result.run_dir, root / result.run_id)
    return cfg, ModelStore(root), result.run_id, root / result.run_id


def test_tampered_model_file_is_refused(run_copy):
    cfg, store, run_id, run_dir = run_copy
    path = run_dir / "5m" / "lightgbm" / "model.txt"
    path.write_text(path.read_text().replace("leaf_value=", "leaf_value=1", 1))
    with pytest.raises(ModelError, match="fails its checksum"):
        store.load(run_id, cfg)


def test_truncated_and_missing_files_are_refused(run_copy):
    cfg, store, run_id, run_dir = run_copy
    path = run_dir / "1d" / "ridge" / "model.json"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ModelError, match="fails its checksum"):
        store.load(run_id, cfg)
    path.unlink()
    with pytest.raises(ModelError, match="is missing"):
        store.load(run_id, cfg)


def _edit_meta(run_dir, rel, **changes):
    """Rewrite a model's metadata and seal it again: what a run trained that way would hold."""
    meta_path = run_dir / rel / "model_meta.json"
    meta = json.loads(meta_path.read_text())
    meta.update(changes)
    write_json_atomic(meta_path, meta, seal=True)


def test_hand_edited_metadata_and_manifest_are_refused(run_copy):
    cfg, store, run_id, run_dir = run_copy
    meta_path = run_dir / "1d" / "ridge" / "model_meta.json"
    original = meta_path.read_text()
    meta = json.loads(original)
    assert meta["content_sha256"] == content_digest(meta)
    # The 1000x edit of bps_scale that an unsealed record accepted.
    meta_path.write_text(json.dumps({**meta, "bps_scale": meta["bps_scale"] * 1000}))
    with pytest.raises(ModelError, match=r"model metadata .*1d/ridge/model_meta.json was changed after training"):
        store.load(run_id, cfg)
    meta_path.write_text(json.dumps({k: v for k, v in meta.items() if k != "content_sha256"}))
    with pytest.raises(ModelError, match="has no content_sha256"):
        store.load(run_id, cfg)
    meta_path.write_text(original)
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    slopes = {h: {**c, "slope": c["slope"] * 2} for h, c in manifest["calibration"].items()}
    manifest_path.write_text(json.dumps({**manifest, "calibration": slopes}))
    with pytest.raises(ModelError, match="manifest .*manifest.json was changed after training"):
        store.load(run_id, cfg)
    manifest_path.write_text(json.dumps(manifest))  # the same content, laid out anew: still sealed
    models = store.load(run_id, cfg)
    assert models.bps_scale[cfg.models.families.index("ridge"), -1] == meta["bps_scale"]


def test_feature_list_mismatch_names_both_sides(run_copy):
    cfg, store, run_id, run_dir = run_copy
    _edit_meta(run_dir, "10m/xgboost", feature_list=list(FEATURE_NAMES[:-1]) + ["ret_999b"])
    with pytest.raises(ModelError) as info:
        store.load(run_id, cfg)
    assert FEATURE_NAMES[-1] in str(info.value) and "ret_999b" in str(info.value)


def test_unsupported_family_and_interval_mismatch(run_copy):
    cfg, store, run_id, run_dir = run_copy
    _edit_meta(run_dir, "5m/xgboost", family="keras")
    with pytest.raises(ModelError, match="'keras' is unsupported"):
        store.load(run_id, cfg)
    _edit_meta(run_dir, "5m/xgboost", family="xgboost", bar_interval="15m")
    with pytest.raises(ModelError, match="trained on 15m bars but market.bar_interval is 5m"):
        store.load(run_id, cfg)


def test_no_active_run_is_a_clear_error(tmp_path, trained):
    cfg = trained[0]
    with pytest.raises(ModelError, match="run `foxlive train` first"):
        ModelStore(tmp_path / "empty").load_active(cfg)


def test_forward_returns_and_barrier_labels_by_hand():
    close = np.array([[100.0], [101.0], [99.0], [103.0]])
    high = np.array([[100.0], [101.5], [99.5], [104.0]])
    low = np.array([[100.0], [100.5], [98.0], [102.0]])
    fr = forward_returns(close, 2)
    assert fr[0, 0] == pytest.approx(99 / 100 - 1) and fr[1, 0] == pytest.approx(103 / 101 - 1)
    assert np.isnan(fr[2:, 0]).all()
    width = np.full_like(close, 0.012)
    peak, valley = barrier_labels(close, high, low, 2, width)
    # From 100: bar 1 high 101.5 >= 101.2 first -> peak. From 101: bar 2 low 98 <= 99.788 -> valley.
    assert (peak[0, 0], valley[0, 0]) == (1.0, 0.0)
    assert (peak[1, 0], valley[1, 0]) == (0.0, 1.0)
    assert np.isnan(peak[2:, 0]).all()


@pytest.mark.parametrize("objective", ["regression", "binary"])
def test_xgboost_fits_the_model_its_plain_dmatrix_would(make_config, objective):
    # families.fit reads the rows into a QuantileDMatrix (binned as read: faster); the model must be the
    # one xgboost.train makes from a plain DMatrix with the configured parameters, byte for byte.
    import xgboost as xgb

    from foxlive_core.models import families

    cfg = make_config({"models": {"xgboost": {"num_boost_round": 40}}})
    rng = np.random.default_rng(5)
    X = rng.normal(size=(4000, 6))
    y = X[:, 0] * 0.5 - X[:, 1] + rng.normal(size=4000)
    if objective == "binary":
        y = (y > 0).astype(float)
    p = cfg.models.xgboost
    params = {"objective": "binary:logistic" if objective == "binary" else "reg:squarederror",
              "eta": p.learning_rate, "max_depth": p.max_depth, "min_child_weight": p.min_child_weight,
              "subsample": p.subsample, "colsample_bytree": p.colsample_bytree, "lambda": p.reg_lambda,
              "tree_method": "hist", "seed": 7, "nthread": cfg.models.training.threads}
    plain = xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=40)
    plain.set_param({"nthread": 1})
    fitted = families.fit("xgboost", objective, X, y, cfg, 7).native
    assert fitted.save_raw("json") == plain.save_raw("json")
    np.testing.assert_array_equal(fitted.inplace_predict(X), plain.inplace_predict(X))


def test_lightgbm_models_that_copy_the_binned_rows_of_another_fit_are_the_same_models(make_config):
    # A horizon's LightGBM return and barrier models fit the same rows: the barrier fits copy the binned
    # rows of the return fit with their own labels. That must leave every model byte for byte as its own
    # binning of the rows makes it.
    from foxlive_core.errors import ModelError
    from foxlive_core.models import families

    cfg = make_config({"models": {"lightgbm": {"num_boost_round": 30, "min_data_in_leaf": 20}}})
    rng = np.random.default_rng(9)
    X = rng.standard_t(3, size=(6000, 5)) * [1.0, 10.0, 0.01, 1.0, 1.0]
    X[::7, 3] = 0.0  # LightGBM's zero bin
    y = X[:, 0] - 0.1 * X[:, 1] + rng.normal(size=6000)
    label = (y > 0).astype(float)

    def text(model):
        return model.native.model_to_string()

    lender = families.lightgbm_dataset(X, y, cfg, "regression", 3)
    first = families.fit("lightgbm", "regression", lender, y, cfg, 3)
    assert text(first) == text(families.fit("lightgbm", "regression", X, y, cfg, 3))
    borrowed = families.fit("lightgbm", "binary", families.lightgbm_relabelled(lender, label), label, cfg, 3)
    assert text(borrowed) == text(families.fit("lightgbm", "binary", X, label, cfg, 3))
    # The copy fits the labels it was given, not the lender's.
    assert text(borrowed) != text(families.fit("lightgbm", "binary", families.lightgbm_relabelled(lender, 1 - label),
                                               1 - label, cfg, 3))
    with pytest.raises(ModelError, match="5999 labels for a LightGBM dataset of 6000 rows"):
        families.lightgbm_relabelled(lender, label[:-1])

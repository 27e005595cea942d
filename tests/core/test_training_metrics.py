"""Validation metrics of the return models, on numbers worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from foxlive_core.models.training import _return_metrics, cross_sectional_pearson

NAMES = ("A", "B", "C", "D", "E")
PRED = [1.0, 2.0, 3.0, 4.0, 5.0]
# Six bars of five symbols, predictions 1..5 at every bar. Rank IC per bar: 1, -1, 0.8 (ranks 1 3 2 5 4:
# 1 - 6 * 4 / 120), 0.9 (ranks 2 1 3 4 5: 1 - 6 * 2 / 120), 1, -1. Pearson equals it except at bar 2, where
# y = 1 3 2 50 4 has mean 12: co-moment 22 + 9 + 0 + 38 - 16 = 53 over sqrt(10 * 1810), 0.393949.
Y = [[1, 2, 3, 4, 5], [5, 4, 3, 2, 1], [1, 3, 2, 50, 4], [2, 1, 3, 4, 5], [1, 2, 3, 4, 5], [5, 4, 3, 2, 1]]
RANK_IC = [1.0, -1.0, 0.8, 0.9, 1.0, -1.0]
PEARSON_BAR2 = 53 / np.sqrt(10 * 1810)


def _rows(n_symbols=5, first_bar=100):
    bars = len(Y)
    rows = np.repeat(np.arange(first_bar, first_bar + bars), n_symbols)
    cols = np.tile(np.arange(n_symbols), bars)
    pred = np.tile(PRED[:n_symbols], bars)
    y = np.array([row[:n_symbols] for row in Y], dtype=float).ravel()
    return pred, y, rows, cols


def test_per_bar_ics_and_t_statistics_on_non_overlapping_bars():
    m = _return_metrics(*_rows(), horizon_bars=2, symbol_names=NAMES)
    assert m["rank_ic"] == pytest.approx(sum(RANK_IC) / 6)
    assert m["ic"] == pytest.approx((1 - 1 + PEARSON_BAR2 + 0.9 + 1 - 1) / 6)
    # Non-overlapping bars for a 2-bar horizon: 0, 2, 4. For values a, b, a: t = (2a + b) / |a - b|.
    assert m["rank_ic_t"] == pytest.approx((2 + 0.8) / 0.2)
    assert m["ic_t"] == pytest.approx((2 + PEARSON_BAR2) / (1 - PEARSON_BAR2))
    assert m["ic_ir"] == pytest.approx(np.mean(RANK_IC) / np.std(RANK_IC, ddof=1))
    assert (m["bars"], m["independent_bars"]) == (6, 3)


def test_every_bar_counts_for_a_one_bar_horizon():
    m = _return_metrics(*_rows(), horizon_bars=1, symbol_names=NAMES)
    assert m["independent_bars"] == 6
    assert m["rank_ic_t"] == pytest.approx(np.mean(RANK_IC) / (np.std(RANK_IC, ddof=1) / np.sqrt(6)))


def test_the_top_symbols_share_of_the_pooled_ic():
    pred, y, rows, cols = _rows()
    m = _return_metrics(pred, y, rows, cols, horizon_bars=2, symbol_names=NAMES)
    # Plain scalar reference: each symbol's co-moment over the pooled normaliser.
    mp, my = sum(pred) / len(pred), sum(y) / len(y)
    norm = np.sqrt(sum((p - mp) ** 2 for p in pred) * sum((v - my) ** 2 for v in y))
    share = {NAMES[s]: sum((p - mp) * (v - my) for p, v, c in zip(pred, y, cols) if c == s) / norm for s in range(5)}
    pooled = sum(share.values())
    top = max(share, key=share.get)
    assert m["pooled_ic"] == pytest.approx(pooled)
    assert m["top_symbol"] == top == "D"  # the 50 at bar 2
    assert m["top_symbol_share"] == pytest.approx(share[top] / pooled)
    keep = cols != NAMES.index(top)
    assert m["pooled_ic_without_top_symbol"] == pytest.approx(np.corrcoef(pred[keep], y[keep])[0, 1])


def test_fewer_than_five_symbols_is_na_not_zero():
    m = _return_metrics(*_rows(n_symbols=4), horizon_bars=2, symbol_names=NAMES)
    assert m["rank_ic"] is None and m["ic"] is None and m["ic_ir"] is None
    assert m["rank_ic_t"] is None and m["ic_t"] is None and m["bars"] == 0
    assert m["pooled_ic"] is not None  # pooled over time, it still has rows
    json.dumps(m)  # None, not NaN: valid JSON


def test_cross_sectional_pearson_drops_missing_pairs():
    pred = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, np.nan], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0], [1.0, 2.0, np.nan, 4.0, 5.0, 6.0]])
    real = np.array([[1.0, 3.0, 2.0, 50.0, 4.0, 9.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2.0, 4.0, 1.0, 8.0, 10.0, np.nan]])
    ic = cross_sectional_pearson(pred, real, 5)
    assert ic[0] == pytest.approx(PEARSON_BAR2)
    assert ic[1] == 0.0  # constant predictions
    assert np.isnan(ic[2])  # four finite pairs


def test_feature_importance_is_stored_in_importance_order(small_run):
    _, _, result = small_run
    meta = json.loads((result.run_dir / "1d" / "lightgbm" / "model_meta.json").read_text())
    values = [f["importance"] for f in meta["feature_importance"]]
    assert values == sorted(values, reverse=True) and sum(values) == pytest.approx(1.0)
    names = [f["feature"] for f in meta["feature_importance"]]
    assert names != sorted(names)
    entry = next(m for m in result.manifest["models"] if m["horizon"] == "1d" and m["kind"] == "lightgbm")
    assert entry["top_features"] == names[:10]
    assert {"rank_ic", "rank_ic_t", "ic", "ic_t", "pooled_ic", "top_symbol_share"} <= set(meta["metrics"])

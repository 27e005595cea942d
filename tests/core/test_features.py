"""Tests of foxlive_core.features: definitions against pandas, window locality, filling, properties."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import foxlive_core.features as features
from foxlive_core.data.types import BAR_FIELDS, BarPanel
from foxlive_core.errors import ConfigError, DataError
from foxlive_core.features import (
    FEATURE_LOOKBACK_BARS,
    FEATURE_NAMES,
    LOOKBACK_BARS,
    FeaturePanel,
    build_features,
    fill_missing_bars,
    required_history_bars,
)

REQUIRED = (
    "ret_1b ret_5b ret_10b ret_20b ret_60b vol_20b vol_60b rsi_7b rsi_14b rsi_21b "
    "sma_ratio_10b sma_ratio_20b sma_ratio_50b bb_pos_20b bb_width_20b macd_line_12_26b macd_signal_9b macd_hist "
    "mom_60b_skip5 atr_14b range_1b volume_ratio_20b volume_ratio_5b_20b "
    "dist_high_20b dist_high_60b dist_low_20b dist_low_60b"
).split()

MAX_FILL = 3


# --------------------------------------------------------------------------- helpers


def make_panel(T: int, N: int, seed: int = 0, missing: float = 0.0, start: str = "2024-01-02 14:35") -> BarPanel:
    """Random-walk closes with consistent random open/high/low and lognormal volume; optional missing bars."""
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0, 0.003, (T, N))
    close = rng.uniform(20, 200, N) * np.exp(np.cumsum(r, axis=0))
    open_ = np.vstack([close[:1], close[:-1]]) * np.exp(rng.normal(0, 0.0005, (T, N)))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.002, (T, N))))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.002, (T, N))))
    volume = rng.lognormal(8, 1, (T, N))
    if missing:
        mask = rng.random((T, N)) < missing
        for x in (open_, high, low, close, volume):
            x[mask] = np.nan
    times = pd.date_range(start, periods=T, freq="5min", tz="UTC")
    return BarPanel(times, tuple(f"S{i}" for i in range(N)), open_, high, low, close, volume)


def with_gaps(panel: BarPanel, gaps: list[tuple[int, int, int]]) -> BarPanel:
    """Blank rows [start, start+length) of column col: gaps = [(col, start, length), ...]."""
    arrays = {f: panel.field(f).copy() for f in BAR_FIELDS}
    for col, start, length in gaps:
        for f in BAR_FIELDS:
            arrays[f][start : start + length, col] = np.nan
    return BarPanel(panel.times, panel.symbols, *(arrays[f] for f in BAR_FIELDS))


def reference_fill(panel: BarPanel, max_fill: int) -> BarPanel:
    """Plain loop version of the filling rule."""
    out = {f: panel.field(f).astype(float).copy() for f in BAR_FIELDS}
    T, N = panel.shape
    for j in range(N):
        prev, run = None, 0
        for t in range(T):
            ohlc = [panel.field(f)[t, j] for f in ("open", "high", "low", "close")]
            if all(np.isfinite(ohlc)):
                prev, run = panel.close[t, j], 0
                continue
            run += 1
            if prev is not None and run <= max_fill:
                for f in ("open", "high", "low", "close"):
                    out[f][t, j] = prev
                out["volume"][t, j] = 0.0
            else:
                for f in BAR_FIELDS:
                    out[f][t, j] = np.nan
    return BarPanel(panel.times, panel.symbols, *(out[f] for f in BAR_FIELDS))


def _ewm_last(K: int, **ewm):
    return lambda s: s.rolling(K).apply(lambda x: pd.Series(x).ewm(adjust=True, **ewm).mean().iloc[-1], raw=True)


def reference_features(panel: BarPanel) -> dict[str, np.ndarray]:
    """Every feature from per-symbol pandas Series of an already filled panel."""
    out: dict[str, list] = {name: [] for name in FEATURE_NAMES}
    for j in range(panel.shape[1]):
        o, h, l, c, v = (pd.Series(panel.field(f)[:, j]) for f in BAR_FIELDS)
        r: dict[str, pd.Series] = {}
        for k in (1, 5, 10, 20, 60):
            r[f"ret_{k}b"] = c / c.shift(k) - 1
        lr = np.log(c).diff()
        r["vol_20b"] = lr.rolling(20).std(ddof=1)
        r["vol_60b"] = lr.rolling(60).std(ddof=1)
        d = c.diff()
        gain, loss = d.clip(lower=0), (-d).clip(lower=0)
        for n in (7, 14, 21):
            ag = _ewm_last(5 * n, alpha=1 / n)(gain)
            al = _ewm_last(5 * n, alpha=1 / n)(loss)
            r[f"rsi_{n}b"] = 100 - 100 / (1 + ag / al)
        for n in (10, 20, 50):
            r[f"sma_ratio_{n}b"] = c / c.rolling(n).mean() - 1
        sma20, std20 = c.rolling(20).mean(), c.rolling(20).std(ddof=0)
        r["bb_pos_20b"] = (c - sma20) / (2 * std20)
        r["bb_width_20b"] = 4 * std20 / sma20
        line = (_ewm_last(48, span=12)(c) - _ewm_last(104, span=26)(c)) / c
        signal = _ewm_last(36, span=9)(line)
        r["macd_line_12_26b"], r["macd_signal_9b"], r["macd_hist"] = line, signal, line - signal
        r["mom_60b_skip5"] = c.shift(5) / c.shift(60) - 1
        pc = c.shift(1)
        tr = pd.concat([h - l, (h - pc).abs(), (l - pc).abs()], axis=1).max(axis=1, skipna=False)
        r["atr_14b"] = _ewm_last(70, alpha=1 / 14)(tr) / c
        r["range_1b"] = (h - l) / c
        r["volume_ratio_20b"] = v / v.rolling(20).mean()
        r["volume_ratio_5b_20b"] = v.rolling(5).mean() / v.rolling(20).mean()
        for n in (20, 60):
            r[f"dist_high_{n}b"] = c / h.rolling(n).max() - 1
            r[f"dist_low_{n}b"] = c / l.rolling(n).min() - 1
        for name in FEATURE_NAMES:
            if name in r:
                out[name].append(r[name].to_numpy())
    closes = pd.DataFrame(panel.close)
    for k in (1, 5, 20, 60, 120, 240):
        ret = closes / closes.shift(k) - 1
        out[f"xret_{k}b"] = [ret.sub(ret.mean(axis=1), axis=0).to_numpy()]  # pandas' mean skips NaN symbols
    return {name: np.column_stack(cols) for name, cols in out.items()}


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bitwise equal, NaN where NaN."""
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


# --------------------------------------------------------------------------- names and lookback


def test_names_cover_the_required_set_in_a_fixed_order():
    assert isinstance(FEATURE_NAMES, tuple)
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert set(REQUIRED) <= set(FEATURE_NAMES)
    assert set(FEATURE_LOOKBACK_BARS) == set(FEATURE_NAMES)


def test_lookback_and_required_history():
    assert LOOKBACK_BARS == max(FEATURE_LOOKBACK_BARS.values()) == 241  # xret_240b
    assert max(v for k, v in FEATURE_LOOKBACK_BARS.items() if not k.startswith("xret")) == 139  # MACD signal: 104 + 36 - 1
    assert FEATURE_LOOKBACK_BARS["rsi_21b"] == 106
    assert FEATURE_LOOKBACK_BARS["atr_14b"] == 71
    assert FEATURE_LOOKBACK_BARS["ret_60b"] == 61
    for m in (0, 1, 3, 10):
        assert required_history_bars(m) == LOOKBACK_BARS + m
    for bad in (-1, 1.5, "3"):
        with pytest.raises(ConfigError):
            required_history_bars(bad)


def test_shipped_config_fetches_enough_history():
    yaml = pytest.importorskip("yaml")
    cfg = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "live_trading.yaml").read_text())
    assert cfg["engine"]["history_bars"] >= required_history_bars(cfg["market"]["max_fill_bars"])


# --------------------------------------------------------------------------- definitions


@pytest.fixture(scope="module")
def reference_case():
    # a few missing bars (filled), one run longer than MAX_FILL (NaN windows), a late-starting symbol
    raw = make_panel(500, 3, seed=11)
    raw = with_gaps(raw, [(0, 100, 2), (1, 150, 5), (2, 0, 60), (0, 250, 1), (1, 300, 3)])
    filled = reference_fill(raw, MAX_FILL)
    return build_features(raw, MAX_FILL), reference_features(filled)


@pytest.mark.parametrize("name", FEATURE_NAMES)
def test_feature_matches_pandas_reference(reference_case, name):
    feats, ref = reference_case
    ours, theirs = feats.feature(name), ref[name]
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg=f"{name}: NaN pattern differs")
    assert np.isfinite(ours).sum() > 200, name
    np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=1e-11, equal_nan=True, err_msg=name)


def test_flat_prices_conventions():
    T = 400
    c = np.full((T, 1), 37.1)
    times = pd.date_range("2024-01-02", periods=T, freq="5min", tz="UTC")
    panel = BarPanel(times, ("FLAT",), c.copy(), c.copy(), c.copy(), c.copy(), np.full((T, 1), 100.0))
    last = dict(zip(FEATURE_NAMES, build_features(panel, MAX_FILL).last()[0]))
    for n in (7, 14, 21):
        assert last[f"rsi_{n}b"] == 50.0
    assert last["bb_pos_20b"] == 0.0
    assert last["vol_20b"] == 0.0 and last["ret_60b"] == 0.0 and last["range_1b"] == 0.0
    assert last["bb_width_20b"] == pytest.approx(0.0, abs=1e-12)
    assert last["macd_hist"] == pytest.approx(0.0, abs=1e-12)
    assert last["volume_ratio_20b"] == pytest.approx(1.0, rel=1e-12)
    assert last["xret_240b"] == 0.0  # one symbol: its return is the universe's mean
    assert all(np.isfinite(list(last.values())))


# --------------------------------------------------------------------------- no look-ahead, window locality


@pytest.mark.parametrize("t", [0, 50, 138, 139, 400, 598])
def test_no_lookahead(t):
    panel = make_panel(600, 4, seed=3, missing=0.03)
    base = build_features(panel, MAX_FILL).values
    rng = np.random.default_rng(t)
    arrays = {f: panel.field(f).copy() for f in BAR_FIELDS}
    for f in BAR_FIELDS:
        junk = rng.uniform(0.01, 1e4, arrays[f][t + 1 :].shape)
        junk[rng.random(junk.shape) < 0.1] = np.nan
        arrays[f][t + 1 :] = junk
    changed = build_features(BarPanel(panel.times, panel.symbols, *(arrays[f] for f in BAR_FIELDS)), MAX_FILL).values
    assert same(changed[: t + 1], base[: t + 1])


@pytest.mark.parametrize("max_fill", [0, 1, MAX_FILL, 7])
def test_window_locality_bitwise(max_fill):
    # long enough for several row blocks; missing bars and runs longer than max_fill
    panel = make_panel(4700, 3, seed=5, missing=0.04)
    panel = with_gaps(panel, [(0, 2040, max_fill + 2), (1, 2045, max_fill), (2, 4000, 150)])
    full = build_features(panel, max_fill)
    need = required_history_bars(max_fill)
    if max_fill >= MAX_FILL:
        assert full.valid_mask()[-1].all()
    for cut in (need, need + 1, 600, 2048, 2049, 2050, 2047 + LOOKBACK_BARS, 4096 + 7, 4170, 4700):
        expected = full.values[cut - 1]
        window = panel.rows(slice(cut - need, cut))
        assert same(build_features(window, max_fill).last(), expected), cut
        live = build_features(panel.rows(slice(0, cut)), max_fill, last_only=True)
        assert live.values.shape == (1, 3, len(FEATURE_NAMES))
        assert live.times[0] == panel.times[cut - 1]
        assert same(live.last(), expected), cut
        assert same(build_features(window, max_fill, last_only=True).last(), expected), cut
        # more history than needed changes nothing either
        wider = panel.rows(slice(max(0, cut - need - 37), cut))
        assert same(build_features(wider, max_fill).last(), expected), cut


def test_last_only_matches_full_for_a_wide_universe():
    panel = make_panel(420, 300, seed=8, missing=0.02)
    full = build_features(panel, MAX_FILL)
    live = build_features(panel, MAX_FILL, last_only=True)
    assert same(live.last(), full.last())
    assert full.valid_mask()[-1].sum() > 200


def test_blocking_changes_no_bit(monkeypatch):
    panel = make_panel(900, 7, seed=9, missing=0.05)
    expected = build_features(panel, MAX_FILL).values
    monkeypatch.setattr(features, "_BLOCK_ELEMS", 700)
    monkeypatch.setattr(features, "_BLOCK_ROWS", 100)
    assert features._block_shape(900, 7) == (100, 2)
    assert same(build_features(panel, MAX_FILL).values, expected)


def test_memory_layout_changes_no_bit():
    panel = make_panel(400, 5, seed=10, missing=0.03)
    expected = build_features(panel, MAX_FILL).values
    fortran = BarPanel(panel.times, panel.symbols, *(np.asfortranarray(panel.field(f)) for f in BAR_FIELDS))
    assert same(build_features(fortran, MAX_FILL).values, expected)
    strided = np.stack([panel.field(f) for f in BAR_FIELDS], axis=-1)  # (T, N, 5): every field strided
    odd = BarPanel(panel.times, panel.symbols, *(strided[:, :, i] for i in range(5)))
    assert same(build_features(odd, MAX_FILL).values, expected)


def test_lookback_is_tight():
    panel = make_panel(LOOKBACK_BARS + 50, 2, seed=12)
    for name, bars in FEATURE_LOOKBACK_BARS.items():
        i = FEATURE_NAMES.index(name)
        enough = build_features(panel.rows(slice(-bars, None)), 0).last()[:, i]
        short = build_features(panel.rows(slice(-(bars - 1), None)), 0).last()[:, i] if bars > 1 else None
        assert np.isfinite(enough).all(), name
        if short is not None:
            assert np.isnan(short).all(), name
    assert build_features(panel.rows(slice(-LOOKBACK_BARS, None)), 0).valid_mask()[-1].all()
    assert not build_features(panel.rows(slice(-(LOOKBACK_BARS - 1), None)), 0).valid_mask()[-1].any()


# --------------------------------------------------------------------------- missing bars


def test_fill_rules_on_a_small_example():
    T = 12
    c = np.arange(1.0, T + 1)[:, None] * np.ones((1, 2))
    o, h, l, v = c - 0.1, c + 0.5, c - 0.5, np.full((T, 2), 10.0)
    arrays = [x.copy() for x in (o, h, l, c, v)]
    # column 0: leading missing row, a 2-bar gap, a 5-bar gap; column 1: a partial-NaN bar and a NaN volume
    for x in arrays:
        x[0, 0] = np.nan
        x[2:4, 0] = np.nan
        x[5:10, 0] = np.nan
    arrays[1][6, 1] = np.nan  # high only
    arrays[4][8, 1] = np.nan  # volume only: the bar stays valid
    times = pd.date_range("2024-01-02", periods=T, freq="5min", tz="UTC")
    panel = BarPanel(times, ("A", "B"), *arrays)
    filled = fill_missing_bars(panel, 3)
    col = {f: filled.field(f)[:, 0] for f in BAR_FIELDS}
    assert all(np.isnan(col[f][0]) for f in BAR_FIELDS)
    for t, prev in ((2, 2.0), (3, 2.0), (5, 5.0), (6, 5.0), (7, 5.0)):
        assert [col[f][t] for f in ("open", "high", "low", "close")] == [prev] * 4
        assert col["volume"][t] == 0.0
    for t in (8, 9):
        assert all(np.isnan(col[f][t]) for f in BAR_FIELDS)
    assert col["close"][10] == 11.0 and col["volume"][10] == 10.0
    b = {f: filled.field(f)[:, 1] for f in BAR_FIELDS}
    assert [b[f][6] for f in BAR_FIELDS] == [6.0, 6.0, 6.0, 6.0, 0.0]
    assert np.isnan(b["volume"][8]) and b["close"][8] == 9.0
    assert same(fill_missing_bars(panel, 0).close[:, 0], np.where(np.isnan(arrays[3][:, 0]), np.nan, c[:, 0]))
    assert filled.times.equals(panel.times) and filled.symbols == panel.symbols


@pytest.mark.parametrize("max_fill", [0, 1, 2, 5])
def test_fill_matches_loop_reference_and_is_window_local(max_fill):
    panel = make_panel(300, 4, seed=max_fill, missing=0.25)
    filled = fill_missing_bars(panel, max_fill)
    ref = reference_fill(panel, max_fill)
    for f in BAR_FIELDS:
        assert same(filled.field(f), ref.field(f)), f
    for t in range(max_fill, 300, 7):
        local = fill_missing_bars(panel.rows(slice(t - max_fill, t + 1)), max_fill)
        for f in BAR_FIELDS:
            assert same(local.field(f)[-1], filled.field(f)[t]), (f, t)


def test_run_longer_than_max_fill_makes_windows_nan():
    panel = with_gaps(make_panel(1000, 2, seed=4), [(0, 500, MAX_FILL + 1)])
    feats = build_features(panel, MAX_FILL)
    dead = 500 + MAX_FILL  # the one bar left NaN
    vm = feats.valid_mask()
    assert vm[:, 1][LOOKBACK_BARS - 1 :].all()
    # symbol 0 is invalid for the 139 rows whose per-symbol windows hold the dead bar, and at the
    # rows whose excess return reads it as its far end
    expected = np.ones(1000, dtype=bool)
    expected[: LOOKBACK_BARS - 1] = False
    expected[dead : dead + 139] = False
    expected[[dead + k for k in (1, 5, 20, 60, 120, 240)]] = False
    assert same(vm[:, 0], expected)
    endpoints = ({f"ret_{k}b": (0, k) for k in (1, 5, 10, 20, 60)} | {"mom_60b_skip5": (5, 60)}
                 | {f"xret_{k}b": (0, k) for k in (1, 5, 20, 60, 120, 240)})
    for name, bars in FEATURE_LOOKBACK_BARS.items():
        x = feats.feature(name)[:, 0]
        if name in endpoints:  # reads two bars only: NaN exactly when one of them is the dead bar
            rows = [dead + lag for lag in endpoints[name]]
            assert np.isnan(x[rows]).all(), name
            assert np.isfinite(np.delete(x[LOOKBACK_BARS:], np.array(rows) - LOOKBACK_BARS)).all(), name
        else:
            assert np.isnan(x[dead : dead + bars]).all(), name
        assert np.isfinite(x[dead + bars :]).all(), name
    # a run of exactly MAX_FILL bars is filled and leaves every row valid
    ok = build_features(with_gaps(make_panel(1000, 1, seed=4), [(0, 500, MAX_FILL)]), MAX_FILL)
    assert ok.valid_mask()[LOOKBACK_BARS - 1 :].all()


def test_symbol_with_short_history_is_nan():
    panel = make_panel(500, 2, seed=6)
    late = with_gaps(panel, [(1, 0, 500 - 50)])  # symbol S1 has only its last 50 bars
    feats = build_features(late, MAX_FILL)
    vm = feats.valid_mask()
    assert vm[-1, 0] and not vm[:, 1].any()
    last = dict(zip(FEATURE_NAMES, feats.last()[1]))
    for name, bars in FEATURE_LOOKBACK_BARS.items():
        assert np.isfinite(last[name]) == (bars <= 50), name
    live = build_features(late, MAX_FILL, last_only=True)
    assert same(live.last(), feats.last())
    tiny = build_features(panel.rows(slice(0, 10)), MAX_FILL)
    assert tiny.values.shape == (10, 2, len(FEATURE_NAMES)) and not tiny.valid_mask().any()
    assert np.isfinite(tiny.feature("ret_5b")[5:]).all() and np.isnan(tiny.feature("ret_5b")[:5]).all()


# --------------------------------------------------------------------------- container


def test_feature_panel_accessors():
    panel = make_panel(200, 3, seed=2)
    feats = build_features(panel, MAX_FILL)
    assert isinstance(feats, FeaturePanel)
    assert feats.names == FEATURE_NAMES and feats.symbols == panel.symbols and feats.times.equals(panel.times)
    assert feats.values.dtype == np.float64 and feats.shape == (200, 3, len(FEATURE_NAMES))
    assert same(feats.last(), feats.values[-1]) and same(feats.row(-1), feats.last()) and same(feats.row(150), feats.values[150])
    assert feats.valid_mask().shape == (200, 3)
    assert same(feats.valid_mask(), np.isfinite(feats.values).all(axis=2))
    assert same(feats.feature("rsi_14b"), feats.values[:, :, FEATURE_NAMES.index("rsi_14b")])
    with pytest.raises(DataError):
        feats.feature("nope")
    with pytest.raises(DataError):
        feats.row(200)
    with pytest.raises(DataError):
        FeaturePanel(feats.times, feats.symbols, feats.names, feats.values[:, :2])


def test_empty_panel():
    panel = make_panel(5, 2).rows(slice(0, 0))
    for last_only in (False, True):
        feats = build_features(panel, MAX_FILL, last_only=last_only)
        assert feats.values.shape == (0, 2, len(FEATURE_NAMES))
    with pytest.raises(DataError):
        feats.last()


# --------------------------------------------------------------------------- properties


@st.composite
def positive_panels(draw):
    T = draw(st.integers(1, 230))
    N = draw(st.integers(1, 3))
    step = st.one_of(st.just(0.0), st.floats(-0.05, 0.05, allow_nan=False))
    r = draw(hnp.arrays(np.float64, (T, N), elements=step))
    wick = draw(hnp.arrays(np.float64, (T, N, 3), elements=st.one_of(st.just(0.0), st.floats(0.0, 0.02))))
    volume = draw(hnp.arrays(np.float64, (T, N), elements=st.one_of(st.just(0.0), st.floats(0.0, 1e7))))
    drop = draw(hnp.arrays(np.bool_, (T, N)))
    start = draw(st.floats(0.5, 5000.0))
    close = start * np.exp(np.cumsum(r, axis=0))
    open_ = np.vstack([close[:1], close[:-1]]) * np.exp(wick[:, :, 0] - 0.01)
    high = np.maximum(open_, close) * np.exp(wick[:, :, 1])
    low = np.minimum(open_, close) * np.exp(-wick[:, :, 2])
    for x in (open_, high, low, close, volume):
        x[drop] = np.nan
    times = pd.date_range("2024-01-02", periods=T, freq="5min", tz="UTC")
    return BarPanel(times, tuple(f"S{i}" for i in range(N)), open_, high, low, close, volume), draw(st.integers(0, 4))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(positive_panels())
def test_properties_on_random_positive_panels(case):
    panel, max_fill = case
    feats = build_features(panel, max_fill)
    with np.errstate(invalid="ignore"):
        for n in (7, 14, 21):
            rsi = feats.feature(f"rsi_{n}b")
            assert ((rsi >= 0) & (rsi <= 100))[np.isfinite(rsi)].all()
        for name in ("vol_20b", "vol_60b", "range_1b", "bb_width_20b", "atr_14b", "volume_ratio_20b", "volume_ratio_5b_20b"):
            x = feats.feature(name)
            assert (x[np.isfinite(x)] >= 0).all(), name
        for n in (20, 60):
            hi, lo = feats.feature(f"dist_high_{n}b"), feats.feature(f"dist_low_{n}b")
            assert (hi[np.isfinite(hi)] <= 0).all() and (lo[np.isfinite(lo)] >= 0).all()
    assert not np.isinf(feats.values).any()
    live = build_features(panel, max_fill, last_only=True)
    assert same(live.last(), feats.last())
    need = required_history_bars(max_fill)
    assert same(build_features(panel.rows(slice(-need, None)), max_fill).last(), feats.last())

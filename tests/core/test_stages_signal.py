"""Stages 2, 4, 5 and 6 of the pipeline: quote gate, z-score, confidence, blend.

Each vectorised stage is checked against the plain scalar reference in
``scalar_reference_signal`` on random inputs (NaN, zeros, ties, constant and
empty buffers included), against its invariants, and on worked examples with
numbers computed by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from foxlive_core.pipeline.blend import (
    append_scores,
    apply_temperature,
    blend_weights,
    horizon_alpha,
    ridge_weights,
    score_correlation,
)
from foxlive_core.pipeline.confidence import (
    cross_sectional_ic,
    append_pairs,
    capacity,
    confidence,
    freshness,
    spearman_ic,
    stability,
)
from foxlive_core.pipeline.quote_gate import quote_gate
from foxlive_core.pipeline.standardize import append, zscore_cross_sectional, zscore_rolling
from tests.core import scalar_reference_signal as ref

SETTINGS = settings(max_examples=80, deadline=None)
NAN = math.nan

# Values with NaN, zeros, repeated values (ties) and ordinary floats.
VALUES = st.one_of(
    st.floats(-100, 100, allow_nan=False, allow_subnormal=False),
    st.sampled_from([0.0, 1.0, -1.0, 2.5, NAN]),
)
DIMS = st.integers(1, 3)


def close(a, b, rtol=1e-9, atol=1e-12):
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=rtol, atol=atol,
                               equal_nan=True)


@st.composite
def buffers(draw, shape):
    """Random buffers (last axis = window) whose rows are random, constant, all-NaN or ties-heavy."""
    data = draw(hnp.arrays(np.float64, shape, elements=VALUES))
    mode = draw(hnp.arrays(np.int8, shape[:-1], elements=st.integers(0, 3)))[..., None]
    const = draw(st.sampled_from([0.0, 0.3, -7.0]))
    data = np.where(mode == 1, const, data)
    data = np.where(mode == 2, NAN, data)
    return np.where(mode == 3, np.round(data), data)


def per_element(fn, *arrays):
    """Apply a scalar reference function element by element (over the common shape)."""
    out = np.empty(np.broadcast_shapes(*(np.shape(a) for a in arrays)))
    arrays = [np.broadcast_to(a, out.shape) for a in arrays]
    for idx in np.ndindex(out.shape):
        out[idx] = fn(*(float(a[idx]) for a in arrays))
    return out


# =================================================================== stage 2: quote gate


@SETTINGS
@given(
    n=st.integers(1, 8),
    data=st.data(),
    max_spread=st.sampled_from([12.0, 5.0, 0.5]),
    max_age=st.sampled_from([0.2, 300.0]),
)
def test_quote_gate_matches_reference(n, data, max_spread, max_age):
    bid = data.draw(hnp.arrays(np.float64, n, elements=st.one_of(
        st.floats(1, 500), st.sampled_from([0.0, -1.0, NAN, math.inf]))))
    rel = data.draw(hnp.arrays(np.float64, n, elements=st.floats(-2e-3, 2e-3)))
    ask = np.where(data.draw(hnp.arrays(bool, n)), bid * (1 + rel), data.draw(
        hnp.arrays(np.float64, n, elements=st.sampled_from([0.0, NAN, -math.inf, 100.0])))
    )
    age = data.draw(hnp.arrays(np.float64, n, elements=st.one_of(st.floats(-1, 400), st.just(NAN))))
    res = quote_gate(bid, ask, age, max_spread, max_age)
    expect = [ref.quote_gate(float(b), float(a), float(g), max_spread, max_age) for b, a, g in zip(bid, ask, age)]
    close(res.spread_bps, [s for s, _ in expect])
    assert res.reason.tolist() == [r for _, r in expect]
    np.testing.assert_array_equal(res.ok, res.reason == "")


def test_quote_gate_worked_examples():
    res = quote_gate([99.99], [100.01], [0.0])
    assert res.spread_bps[0] == pytest.approx(2.0, abs=1e-9)
    assert res.ok.tolist() == [True]
    # Priority: invalid > crossed > stale > wide; an age equal to the limit passes.
    res = quote_gate(
        bid=[NAN, 0.0, 101.0, 100.0, 100.0, 100.0, 100.0, 100.0],
        ask=[100.0, 100.0, 100.0, 100.3, 100.3, 100.1, 100.0, math.inf],
        quote_age_s=[9.0, 0.0, 9.0, 9.0, 0.1, 0.2, NAN, 0.0],
        max_spread_bps=12.0,
        max_age_s=0.2,
    )
    assert res.reason.tolist() == ["invalid_quote", "invalid_quote", "crossed_quote", "stale_quote",
                                   "spread_too_wide", "", "stale_quote", "invalid_quote"]
    assert res.ok.tolist() == [False, False, False, False, False, True, False, False]
    close(res.spread_bps[[0, 1, 2, 7]], [NAN] * 4)
    assert res.spread_bps[6] == 0.0  # a locked quote is not crossed
    # 63 / 65: mid 64, spread 2/64 = 312.5 bps exactly; a spread equal to the limit passes.
    assert quote_gate([63.0, 63.0], [65.0, 65.0], [0.0, 0.0], 312.5).ok.tolist() == [True, True]
    assert quote_gate([63.0], [65.0], [0.0], 312.4).reason.tolist() == ["spread_too_wide"]


# =================================================================== buffers


def test_append_shifts_and_skips_non_finite():
    buf = np.array([[NAN, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    new = append(buf, [9.0, NAN, math.inf])
    close(new, [[1.0, 2.0, 9.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    close(buf[0], [NAN, 1.0, 2.0])  # the input is not modified
    hist = np.arange(12.0).reshape(2, 3, 2)  # two histories of 3 rows x 2 columns
    new = append(hist, [[100.0, NAN], [200.0, 300.0]], axis=-2)
    close(new, [[[2, 1], [4, 3], [100, 5]], [[8, 9], [10, 11], [200, 300]]])


@SETTINGS
@given(f=DIMS, h=DIMS, n=DIMS, w=st.integers(1, 6), data=st.data())
def test_append_pairs_keeps_pairs_aligned(f, h, n, w, data):
    pred_hist = data.draw(buffers((f, h, n, w)))
    real_hist = data.draw(buffers((f, h, n, w)))
    pred = data.draw(hnp.arrays(np.float64, (f, h, n), elements=VALUES))
    real = data.draw(hnp.arrays(np.float64, (h, n), elements=VALUES))
    new_p, new_r = append_pairs(pred_hist, real_hist, pred, real)
    for i, j, k in np.ndindex(f, h, n):
        ep, er = ref.append_pair(pred_hist[i, j, k].tolist(), real_hist[i, j, k].tolist(), float(pred[i, j, k]),
                                 float(real[j, k]))
        close(new_p[i, j, k], ep)
        close(new_r[i, j, k], er)


@SETTINGS
@given(f=DIMS, h=DIMS, n=DIMS, p=st.integers(1, 5), data=st.data())
def test_append_scores_matches_reference(f, h, n, p, data):
    hist = data.draw(hnp.arrays(np.float64, (h, n, p, f), elements=VALUES))
    scores = data.draw(hnp.arrays(np.float64, (f, h, n), elements=VALUES))
    new = append_scores(hist, scores)
    for j, k in np.ndindex(h, n):
        close(new[j, k], ref.append_row(hist[j, k].tolist(), scores[:, j, k].tolist()))


# =================================================================== stage 4: z-score


@SETTINGS
@given(f=DIMS, h=DIMS, n=DIMS, w=st.integers(1, 6), min_samples=st.integers(1, 4),
       clip=st.sampled_from([3.0, 1.5]), data=st.data())
def test_zscore_rolling_matches_reference(f, h, n, w, min_samples, clip, data):
    buffer = data.draw(buffers((f, h, n, w)))
    raw = data.draw(hnp.arrays(np.float64, (f, h, n), elements=VALUES))
    z, new = zscore_rolling(raw, buffer, min_samples, clip)
    for idx in np.ndindex(f, h, n):
        ez, enew = ref.zscore_rolling(float(raw[idx]), buffer[idx].tolist(), min_samples, clip)
        close(z[idx], ez, rtol=1e-7, atol=1e-9)
        close(new[idx], enew)
    assert np.all(np.abs(z[np.isfinite(z)]) <= clip)
    assert np.array_equal(np.isnan(z), np.isnan(raw))


@SETTINGS
@given(f=DIMS, h=DIMS, n=st.integers(1, 8), min_samples=st.integers(1, 4), clip=st.sampled_from([3.0, 1.5]),
       data=st.data())
def test_zscore_cross_sectional_matches_reference(f, h, n, min_samples, clip, data):
    raw = data.draw(buffers((f, h, n)))
    z = zscore_cross_sectional(raw, min_samples, clip)
    for i, j in np.ndindex(f, h):
        row = raw[i, j].tolist()
        close(z[i, j], [ref.zscore(v, row, min_samples, clip) for v in row], rtol=1e-7, atol=1e-9)
    assert np.all(np.abs(z[np.isfinite(z)]) <= clip)


def test_zscore_worked_examples():
    # Buffer 1, 2, 3 then 4: window 2, 3, 4, mean 3, population std sqrt(2/3); z = 1/sqrt(2/3) = 1.2247.
    z, new = zscore_rolling(np.array([[[4.0]]]), np.array([[[[1.0, 2.0, 3.0]]]]))
    assert z[0, 0, 0] == pytest.approx(1.224745, abs=1e-6)
    close(new[0, 0, 0], [2.0, 3.0, 4.0])
    # Warm-up (2 samples < 3): the clipped raw value; constant buffer: 0; NaN raw: NaN and no append.
    raw = np.array([[[5.0, 0.5, 2.0, NAN]]])
    buf = np.array([[[[NAN, NAN, 1.0], [NAN, NAN, 1.0], [2.0, 2.0, 2.0], [1.0, 2.0, 3.0]]]])
    z, new = zscore_rolling(raw, buf)
    close(z[0, 0], [3.0, 0.5, 0.0, NAN])
    close(new[0, 0, 3], [1.0, 2.0, 3.0])
    # Cross-section 1, 2, 3, NaN: mean 2, std sqrt(2/3).
    z = zscore_cross_sectional(np.array([[[1.0, 2.0, 3.0, NAN]]]))
    close(z[0, 0], [-1.224745, 0.0, 1.224745, NAN], atol=1e-6)


# =================================================================== stage 5: confidence


@SETTINGS
@given(f=DIMS, h=DIMS, n=DIMS, w=st.integers(1, 10), min_pairs=st.integers(2, 6), data=st.data())
def test_spearman_ic_matches_scipy_reference(f, h, n, w, min_pairs, data):
    pred = data.draw(buffers((f, h, n, w)))
    real = data.draw(buffers((h, n, w)))  # broadcast over families
    ic = spearman_ic(pred, real, min_pairs)
    assert ic.shape == (f, h, n)
    for i, j, k in np.ndindex(f, h, n):
        close(ic[i, j, k], ref.spearman_ic(pred[i, j, k].tolist(), real[j, k].tolist(), min_pairs), atol=1e-12)
    assert np.all((ic >= -1) & (ic <= 1))


@SETTINGS
@given(f=DIMS, h=DIMS, n=st.integers(1, 12), min_pairs=st.integers(2, 6), data=st.data())
def test_cross_sectional_ic_matches_scipy_reference(f, h, n, min_pairs, data):
    pred = data.draw(buffers((f, h, n)))
    real = data.draw(buffers((h, n)))  # the realised return is shared by every family
    ic = cross_sectional_ic(pred, real[None], min_pairs)
    assert ic.shape == (f, h)
    for i, j in np.ndindex(f, h):
        finite = int((np.isfinite(pred[i, j]) & np.isfinite(real[j])).sum())
        if finite < min_pairs:
            assert np.isnan(ic[i, j])  # unmeasured this cycle: nothing is appended to the history
        else:
            close(ic[i, j], ref.spearman_ic(pred[i, j].tolist(), real[j].tolist(), min_pairs), atol=1e-12)


def test_cross_sectional_ic_worked_example():
    # Ranks across five symbols: (1, 2.5, 2.5, 4, 5) against (1..5) -> 9.5 / sqrt(95); the NaN symbol drops out.
    ic = cross_sectional_ic(np.array([[1.0, 2.0, 2.0, 3.0, 4.0, NAN]]), np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]), 5)
    assert ic[0] == pytest.approx(9.5 / math.sqrt(95.0), abs=1e-12)


INTS = hnp.arrays(np.float64, st.tuples(DIMS, st.integers(5, 12)),
                  elements=st.one_of(st.integers(-30, 30).map(float), st.just(NAN)))


@SETTINGS
@given(pred=INTS, data=st.data())
def test_spearman_ic_invariant_to_monotone_transforms(pred, data):
    real = data.draw(hnp.arrays(np.float64, pred.shape, elements=st.one_of(st.integers(-30, 30).map(float),
                                                                         st.just(NAN))))
    ic = spearman_ic(pred, real, 3)
    close(spearman_ic(pred**3 + pred, np.exp(real / 7.0), 3), ic, atol=1e-12)
    close(spearman_ic(-pred, real, 3), -ic, atol=1e-12)
    assert np.all(np.abs(ic) <= 1)


def test_spearman_ic_worked_examples():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert spearman_ic(x, x**2, 5) == pytest.approx(1.0)
    assert spearman_ic(x, -x, 5) == pytest.approx(-1.0)
    assert spearman_ic(x, np.full(6, 2.0), 5) == 0.0  # constant realised returns
    # Only 4 finite pairs (< 5): 0.
    assert spearman_ic(x, np.array([1.0, NAN, 3.0, 4.0, 5.0, NAN]), 5) == 0.0
    # Ties: ranks (1, 2.5, 2.5, 4, 5) against (1..5): 9.5 / sqrt(9.5 * 10) = 0.974679.
    ic = spearman_ic([1.0, 2.0, 2.0, 3.0, 4.0, NAN], [10.0, 20.0, 30.0, 40.0, 50.0, 60.0], 5)
    assert ic == pytest.approx(9.5 / math.sqrt(95.0), abs=1e-12)


@SETTINGS
@given(h=DIMS, n=st.integers(1, 6), data=st.data())
def test_freshness_matches_reference(h, n, data):
    age = data.draw(hnp.arrays(np.float64, n, elements=st.one_of(st.floats(-100, 1e5), st.just(NAN))))
    tau = data.draw(hnp.arrays(np.float64, h, elements=st.floats(1.0, 1e4)))
    fr = freshness(age, tau)
    assert fr.shape == (h, n)
    close(fr, per_element(ref.freshness, age[None, :], tau[:, None]))
    assert np.all((fr[np.isfinite(fr)] >= 0) & (fr[np.isfinite(fr)] <= 1))


def test_freshness_worked_examples():
    fr = freshness([150.0, 0.0, -5.0], [150.0, 300.0])
    close(fr, [[math.exp(-1), 1.0, 1.0], [math.exp(-0.5), 1.0, 1.0]])


MONEY = st.one_of(st.floats(-1e6, 1e9), st.sampled_from([0.0, NAN, 1e5]))


@SETTINGS
@given(n=st.integers(1, 8), kappa=st.sampled_from([0.1, 0.5]), data=st.data())
def test_capacity_matches_reference(n, kappa, data):
    adv = data.draw(hnp.arrays(np.float64, n, elements=MONEY))
    planned = data.draw(hnp.arrays(np.float64, n, elements=MONEY))
    cap = capacity(adv, planned, kappa)
    close(cap, [ref.capacity(float(a), float(p), kappa) for a, p in zip(adv, planned)])
    assert np.all((cap >= 0) & (cap <= 1))


def test_capacity_worked_examples():
    close(capacity([1e6, 1e6, NAN, 0.0, 1e9, 1e6], [2e5, 0.0, 1e4, 1e4, 1e4, NAN], 0.1),
          [0.5, 1.0, 0.0, 0.0, 1.0, 1.0])


@SETTINGS
@given(f=DIMS, h=DIMS, n=DIMS, w=st.integers(1, 6), warmup=st.sampled_from([0.5, 0.0]), data=st.data())
def test_stability_matches_reference(f, h, n, w, warmup, data):
    err = data.draw(buffers((f, h, n, w)))
    stab = stability(err, warmup)
    for idx in np.ndindex(f, h, n):
        close(stab[idx], ref.stability(err[idx].tolist(), warmup))
    assert np.all((stab >= 0) & (stab <= 1))


def test_stability_worked_examples():
    # RMSE of (3, 4) = sqrt(12.5) = 3.5355; empty buffer: the warm-up value.
    close(stability([[3.0, 4.0, NAN], [NAN, NAN, NAN]], 0.5), [1 / (1 + math.sqrt(12.5)), 0.5])


UNIT = st.one_of(st.floats(0, 1), st.sampled_from([0.0, 1.0]))


@SETTINGS
@given(f=DIMS, h=DIMS, n=DIMS, floor=st.sampled_from([0.01, 0.05]), data=st.data())
def test_confidence_matches_reference_and_bounds(f, h, n, floor, data):
    ic = data.draw(hnp.arrays(np.float64, (f, h, n), elements=st.one_of(st.floats(-1, 1), st.just(NAN))))
    fresh = data.draw(hnp.arrays(np.float64, (h, n), elements=UNIT))
    cap = data.draw(hnp.arrays(np.float64, n, elements=UNIT))
    stab = data.draw(hnp.arrays(np.float64, (f, h, n), elements=UNIT))
    c = confidence(ic, fresh, cap, stab, floor)
    assert c.shape == (f, h, n)
    close(c, per_element(lambda *a: ref.confidence(*a, floor), ic, fresh, cap, stab))
    assert np.all(c >= 0)
    assert np.all(c <= np.fmax(ic, floor) * (1 + 1e-12))


def test_confidence_worked_example():
    # max(0.05, 0.01) * 0.5 * 0.8 * 0.5 = 0.01; a NaN or negative IC counts as the floor 0.01.
    c = confidence(np.array([[[0.05, NAN, -0.2]]]), np.array([[0.5, 1.0, 1.0]]), np.array([0.8, 1.0, 1.0]),
                   np.array([[[0.5, 1.0, 1.0]]]))
    close(c, [[[0.01, 0.01, 0.01]]])


# =================================================================== stage 6: blend


@SETTINGS
@given(h=DIMS, n=DIMS, p=st.integers(1, 9), f=st.integers(1, 4), min_points=st.integers(2, 6), data=st.data())
def test_score_correlation_matches_reference(h, n, p, f, min_points, data):
    hist = data.draw(buffers((h, n, f, p))).swapaxes(-1, -2)  # constant / NaN columns as well as rows
    corr = score_correlation(hist, min_points)
    assert corr.shape == (h, n, f, f)
    for j, k in np.ndindex(h, n):
        close(corr[j, k], ref.score_correlation(hist[j, k].tolist(), f, min_points), rtol=1e-7, atol=1e-9)
    close(np.diagonal(corr, axis1=-2, axis2=-1), np.ones((h, n, f)))
    close(corr, corr.swapaxes(-1, -2))


def test_score_correlation_worked_examples():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    hist = np.stack([a, 2 * a + 1, -a, np.full(5, 0.7)], axis=-1)  # (P=5, F=4)
    close(score_correlation(hist, 5), [[1, 1, -1, 0], [1, 1, -1, 0], [-1, -1, 1, 0], [0, 0, 0, 1]])
    hist[0, 1] = NAN  # only 4 complete rows left: identity
    close(score_correlation(hist, 5), np.eye(4))


@st.composite
def correlations(draw, shape, f):
    hist = draw(hnp.arrays(np.float64, shape + (8, f), elements=st.floats(-3, 3)))
    return score_correlation(hist, 2)


@SETTINGS
@given(h=DIMS, n=DIMS, f=st.integers(1, 4), lam=st.floats(0.01, 1.0), data=st.data())
def test_ridge_weights_match_reference(h, n, f, lam, data):
    corr = data.draw(correlations((h, n), f))
    mu = data.draw(hnp.arrays(np.float64, (h, n, f), elements=st.one_of(st.floats(-0.2, 0.3),
                                                                       st.sampled_from([0.01, NAN]))))
    w = ridge_weights(mu, corr, lam)
    for j, k in np.ndindex(h, n):
        close(w[j, k], ref.ridge_weights(mu[j, k].tolist(), corr[j, k].tolist(), lam), rtol=1e-7, atol=1e-9)
    assert np.all(w >= 0)
    close(w.sum(axis=-1), 1.0)


def test_ridge_weights_worked_examples():
    corr = np.array([[1.0, 0.9, 0.1], [0.9, 1.0, 0.1], [0.1, 0.1, 1.0]])
    # By hand: by symmetry w_A = w_B = a, 2.05 a + 0.1 c = 0.1, 0.2 a + 1.15 c = 0.1 -> a = 0.04492, c = 0.07914.
    np.testing.assert_allclose(ridge_weights(np.full(3, 0.1), corr, 0.15), [0.266, 0.266, 0.468], atol=5e-4)
    # Singular (two identical families, no ridge): equal weights; one family: 1; all clipped to 0: equal.
    close(ridge_weights([0.1, 0.2], np.ones((2, 2)), 0.0), [0.5, 0.5])
    close(ridge_weights([[0.3]], [[[1.0]]], 0.15), [[1.0]])
    close(ridge_weights([-0.1, -0.2, -0.3], np.eye(3), 0.15), [1 / 3] * 3)
    # A batch mixing singular and regular systems solves the regular ones.
    mixed = ridge_weights([[0.1, 0.3], [0.1, 0.3]], [np.ones((2, 2)), np.eye(2)], 0.0)
    close(mixed, [[0.5, 0.5], [0.25, 0.75]])


WEIGHTS = hnp.arrays(np.float64, st.tuples(DIMS, st.integers(1, 5)),
                     elements=st.one_of(st.floats(0, 1), st.just(0.0))).filter(lambda w: np.all(w.sum(-1) > 1e-6))


@SETTINGS
@given(w=WEIGHTS, t=st.floats(0.05, 5.0))
def test_apply_temperature_matches_reference(w, t):
    out = apply_temperature(w, t)
    for i in range(w.shape[0]):
        close(out[i], ref.apply_temperature(w[i].tolist(), t))
    assert np.all(out >= 0)
    close(out.sum(-1), 1.0)


@SETTINGS
@given(w=WEIGHTS, t_flat=st.floats(0.05, 1.0), t_sharp=st.floats(1.0, 5.0))
def test_temperature_below_one_flattens_above_one_sharpens(w, t_flat, t_sharp):
    w = w / w.sum(-1, keepdims=True)
    flat, sharp = apply_temperature(w, t_flat), apply_temperature(w, t_sharp)
    tol = 1e-12
    assert np.all(flat.max(-1) <= w.max(-1) + tol) and np.all(flat.min(-1) >= w.min(-1) - tol)
    assert np.all(sharp.max(-1) >= w.max(-1) - tol) and np.all(sharp.min(-1) <= w.min(-1) + tol)


def test_apply_temperature_worked_examples():
    # 0.8^0.75 = 0.84590, 0.2^0.75 = 0.29907 -> 0.7388, 0.2612: T < 1 flattens.
    np.testing.assert_allclose(apply_temperature([0.8, 0.2], 0.75), [0.739, 0.261], atol=5e-4)
    # Per-horizon temperatures broadcast as (H, 1, 1); all-zero weights become equal.
    out = apply_temperature(np.array([[[0.8, 0.2]], [[0.8, 0.2]], [[0.0, 0.0]]]), np.array([1.0, 2.0, 0.5])[:, None, None])
    close(out[:, 0], [[0.8, 0.2], [0.64 / 0.68, 0.04 / 0.68], [0.5, 0.5]])


@SETTINGS
@given(f=st.integers(1, 3), h=DIMS, n=DIMS, p=st.integers(1, 8), cost_share=st.sampled_from([0.0, 0.1]),
       lam=st.sampled_from([0.15, 0.5]), min_points=st.integers(2, 5), data=st.data())
def test_blend_weights_match_reference(f, h, n, p, cost_share, lam, min_points, data):
    ic = data.draw(hnp.arrays(np.float64, (f, h, n), elements=st.one_of(st.floats(-0.3, 0.3), st.just(NAN))))
    hist = data.draw(buffers((h, n, f, p))).swapaxes(-1, -2)
    temps = data.draw(hnp.arrays(np.float64, h, elements=st.floats(0.5, 1.5)))
    w = blend_weights(ic, hist, cost_share, lam, min_points, temps)
    assert w.shape == (h, n, f)
    for j, k in np.ndindex(h, n):
        expect = ref.blend_weights(ic[:, j, k].tolist(), hist[j, k].tolist(), cost_share, lam, min_points,
                                   float(temps[j]))
        close(w[j, k], expect, rtol=1e-7, atol=1e-9)
    assert np.all(w >= 0)
    close(w.sum(-1), 1.0)


def test_blend_weights_worked_example():
    # No score history: corr = I, mu = max(IC - 0.05, 0.01) = (0.15, 0.05, 0.01), w = mu / 0.21 (ridge cancels).
    ic = np.array([0.2, 0.1, NAN])[:, None, None]
    w = blend_weights(ic, np.full((1, 1, 3, 3), NAN), cost_share=0.1, lam=0.15, min_points=5, temperature=[1.0])
    close(w[0, 0], [0.15 / 0.21, 0.05 / 0.21, 0.01 / 0.21])


@SETTINGS
@given(f=st.integers(1, 3), h=DIMS, n=DIMS, data=st.data())
def test_horizon_alpha_matches_reference(f, h, n, data):
    cal = data.draw(hnp.arrays(np.float64, (f, h, n), elements=VALUES))
    w = data.draw(hnp.arrays(np.float64, (h, n, f), elements=st.one_of(st.floats(0, 1), st.just(0.0))))
    scale = data.draw(hnp.arrays(np.float64, (f, h), elements=st.one_of(st.floats(0.5, 80), st.just(NAN))))
    alpha = horizon_alpha(cal, w, scale)
    assert alpha.shape == (h, n)
    for j, k in np.ndindex(h, n):
        close(alpha[j, k], ref.horizon_alpha(cal[:, j, k].tolist(), w[j, k].tolist(), scale[:, j].tolist()),
              rtol=1e-9, atol=1e-9)


def test_horizon_alpha_worked_example():
    cal = np.array([[[0.5, 0.5, NAN]], [[-1.0, NAN, NAN]]])  # (F=2, H=1, N=3)
    w = np.array([[[0.75, 0.25], [0.75, 0.25], [0.5, 0.5]]])  # (H=1, N=3, F=2)
    scale = np.array([[20.0], [40.0]])
    # 0.75 * 0.5 * 20 + 0.25 * -1 * 40 = -2.5; family 2 missing: 0.5 * 20 = 10 (weights renormalised); none: NaN.
    close(horizon_alpha(cal, w, scale), [[-2.5, 10.0, NAN]])


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(1, 12),
    st.lists(st.sampled_from([np.nan, -1.0, 0.0, 0.5, 2.0, 3.0]), min_size=48, max_size=48),
)
def test_average_ranks_equal_scipy_rankdata_row_by_row(rows, n, pool):
    from scipy.stats import rankdata

    from foxlive_core.pipeline.confidence import average_ranks

    x = np.array(pool[: rows * n]).reshape(rows, n)  # ties and NaN are common by construction
    got = average_ranks(x)
    for row_got, row in zip(got, x):
        want = rankdata(row, method="average", nan_policy="omit")
        np.testing.assert_array_equal(row_got, want)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(5, 40), st.booleans(), st.booleans())
def test_cross_sectional_ic_of_one_realised_row_for_every_family_equals_scipy(seed, n, ties, same_gaps):
    """The realised returns are shared by the families (broadcast, ranked once when their gaps are the
    predictions' too); each (family, horizon) must still be scipy's Spearman over its own finite pairs."""
    from scipy.stats import spearmanr

    from foxlive_core.pipeline.confidence import cross_sectional_ic

    rng = np.random.default_rng(seed)
    pred = rng.standard_normal((3, 2, n))
    real = rng.standard_normal((2, n))
    if ties:
        pred, real = np.round(pred), np.round(real * 2) / 2
    gaps = rng.random((2, n)) < 0.2
    real[gaps] = np.nan
    real[0, np.flatnonzero(gaps[0])[:1]] = -np.inf  # a non-finite return that is not NaN drops out as well
    pred[:, gaps] = np.nan
    if not same_gaps:
        pred[1, 0, rng.integers(n)] = np.nan  # one family misses a symbol the others have
    got = cross_sectional_ic(pred, real[None], min_pairs=5)
    for f in range(3):
        for h in range(2):
            ok = np.isfinite(pred[f, h]) & np.isfinite(real[h])
            a, b = pred[f, h][ok], real[h][ok]
            if ok.sum() < 5:
                assert np.isnan(got[f, h])
            elif np.ptp(a) == 0 or np.ptp(b) == 0:
                assert got[f, h] == 0.0
            else:
                assert got[f, h] == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)


def test_feedback_pairs_a_prediction_with_the_return_since_the_bar_it_was_made_at():
    from foxlive_core.pipeline.feedback import mature, push

    # window of 4 bars at t = 10, 20, 30, 40; horizons of 1 and 2 bars; 1 family, 2 symbols
    window = np.array([10, 20, 30, 40], dtype=np.int64)
    close = np.array([[100.0, 50.0], [101.0, 49.0], [102.0, 50.0], [99.0, 51.0]])
    empty = np.iinfo(np.int64).min
    # horizon 1's ring holds the prediction made at t=30; horizon 2's ring the ones at 20 and 30,
    # but the one at 20 is missing (a skipped cycle), so horizon 2 has nothing to mature at t=40
    rings_t = [np.array([30]), np.array([empty, 30])]
    rings_p = [np.array([[[0.01, -0.02]]]), np.array([[[np.nan, np.nan]], [[0.03, 0.04]]])]
    rings_a = [np.array([[5.0, -6.0]]), np.array([[np.nan, np.nan], [7.0, 8.0]])]
    got = mature(rings_t, rings_p, rings_a, close, window, (1, 2))
    np.testing.assert_allclose(got.realised[0], [99 / 102 - 1, 51 / 50 - 1])
    assert np.isnan(got.realised[1]).all() and np.isnan(got.pred[0, 1]).all()
    np.testing.assert_array_equal(got.pred[0, 0], [0.01, -0.02])
    np.testing.assert_array_equal(got.alpha[0], [5.0, -6.0])
    # a push drops the oldest slot and keeps NaN values
    np.testing.assert_array_equal(push(np.array([1, 2, 3]), 4), [2, 3, 4])
    assert np.isnan(push(np.array([[1.0], [2.0]]), [np.nan])[-1, 0])

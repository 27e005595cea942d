"""Stage 5: how much to trust each model's score right now.

c = max(IC, floor) * freshness * capacity * stability, per (family, horizon, symbol):

- IC: Spearman rank correlation between the predictions a model made h ago and
  the returns realised since, over a rolling window of pairs (:func:`spearman_ic`).
  The caller feeds the realised returns back every cycle with
  :func:`append_pairs`.
- freshness = exp(-max(age, 0) / tau_h): older predictions count less.
- capacity = min(1, kappa * ADV / planned dollars): trades large against the
  symbol's liquidity count less.
- stability = 1 / (1 + RMSE) of the recent calibration errors.

The calibrated score is s~ = s * c (one multiply, done by the caller).
"""

from __future__ import annotations

import numpy as np

from foxlive_core.pipeline.standardize import append, sum_last

__all__ = ["append", "append_pairs", "spearman_ic", "cross_sectional_ic", "freshness", "capacity", "stability", "confidence"]


def append_pairs(pred_hist, real_hist, pred, real) -> tuple[np.ndarray, np.ndarray]:
    """Append (prediction, realised return) pairs to two aligned buffers.

    A pair is appended only when both halves are finite, so the two buffers
    never drift out of step (plain :func:`append` on each would skip a NaN
    half alone).

    Parameters
    ----------
    pred_hist, real_hist : array_like, shape (F, H, N, W)
        Past predictions (made h ago) and the returns realised since, oldest
        first. ``real_hist`` must be kept per family too, because a family's
        missing prediction skips that family's pair only.
    pred : array_like, shape (F, H, N)
        The predictions that have just matured.
    real : array_like, shape (F, H, N) or (H, N)
        The returns realised over each horizon (broadcast over families).

    Returns
    -------
    new_pred_hist, new_real_hist : ndarray, shape (F, H, N, W)
    """
    pred, real = np.broadcast_arrays(np.asarray(pred, dtype=float), np.asarray(real, dtype=float))
    both = np.isfinite(pred) & np.isfinite(real)
    return append(pred_hist, np.where(both, pred, np.nan)), append(real_hist, np.where(both, real, np.nan))


def _rank_signs(xt: np.ndarray) -> np.ndarray:
    """Twice each value's centred rank, #(smaller) - #(larger), along axis 0 of (W, M); 0 for NaN.

    With ties averaged, rank_i - (n + 1) / 2 = (#(x_j < x_i) - #(x_j > x_i)) / 2
    over the n valid entries; NaN compares false both ways, so it drops out.
    """
    gt = xt[:, None, :] > xt[None, :, :]
    # Counts stay below W: the smallest unsigned type that holds W sums fastest.
    count = np.min_scalar_type(xt.shape[0])
    return gt.sum(axis=1, dtype=count).astype(float) - gt.sum(axis=0, dtype=count)


def spearman_ic(pred_hist, real_hist, min_pairs: int = 5) -> np.ndarray:
    """Spearman rank correlation of paired buffers, pair by pair along the last axis.

    Only the pairs where both values are finite count; ties get averaged
    ranks, as in ``scipy.stats.spearmanr``.

    Parameters
    ----------
    pred_hist, real_hist : array_like, shape (..., W)
        Predictions and realised returns, broadcast against each other
        (e.g. (F, H, N, W) against (F, H, N, W) or (H, N, W)).
    min_pairs : int
        Fewer finite pairs than this gives an IC of 0.

    Returns
    -------
    ic : ndarray, shape (...)
        In [-1, 1]; 0 when there are too few pairs or either side's ranks are
        all equal.

    Notes
    -----
    Ranks come from all W x W comparisons within each buffer: exact with ties
    and fastest for the short IC windows used (W = 20); time and memory grow
    as W^2 per buffer (W = 100 over 9 000 buffers takes about 90 MB).
    """
    p, r = np.broadcast_arrays(np.asarray(pred_hist, dtype=float), np.asarray(real_hist, dtype=float))
    shape, w = p.shape[:-1], p.shape[-1]
    m = int(np.prod(shape))
    # Window axis first, (W, M): the comparisons and sums below run over contiguous rows of M buffers.
    pt = np.ascontiguousarray(np.moveaxis(p, -1, 0)).reshape(w, m)
    rt = np.ascontiguousarray(np.moveaxis(r, -1, 0)).reshape(w, m)
    valid = np.isfinite(pt) & np.isfinite(rt)
    n = valid.sum(axis=0).reshape(shape)
    sp = _rank_signs(np.where(valid, pt, np.nan))
    sr = _rank_signs(np.where(valid, rt, np.nan))
    cov = (sp * sr).sum(axis=0).reshape(shape)
    # Integer sums: all-tied ranks give exactly 0.
    var = ((sp * sp).sum(axis=0) * (sr * sr).sum(axis=0)).reshape(shape)
    ok = (n >= min_pairs) & (var > 0)
    ic = np.divide(cov, np.sqrt(var), out=np.zeros(shape), where=ok)
    return np.clip(ic, -1.0, 1.0)


def average_ranks(x) -> np.ndarray:
    """Ranks 1..n along the last axis, ties sharing their average rank, NaN left out (and given NaN).

    ``scipy.stats.rankdata(..., method="average", nan_policy="omit")`` row by row, in one vectorised pass
    (a sort, then each tie group's first position plus half its size less one), so the same ranks exactly.

    Parameters
    ----------
    x : array_like, shape (..., N)

    Returns
    -------
    ndarray, shape (..., N), float64: integers or halves; NaN where x is NaN.
    """
    x = np.asarray(x, dtype=float)
    n = x.shape[-1]
    if n == 0:
        return x.copy()
    rows = x.reshape(-1, n)
    order = np.argsort(rows, axis=-1)  # NaN sort last; the order within a tie does not change its average
    xs = np.take_along_axis(rows, order, axis=-1)
    starts = np.ones(xs.shape, dtype=bool)
    np.not_equal(xs[:, 1:], xs[:, :-1], out=starts[:, 1:])  # NaN != NaN: each NaN its own group, masked below
    pos = np.arange(1, n + 1, dtype=float)
    if starts.all():  # no ties: the rank is the position in the sorted row
        sorted_ranks = np.broadcast_to(pos, xs.shape)
    else:
        group = np.cumsum(starts.ravel())  # ids increase across rows too, as every row starts a group
        first = np.maximum.accumulate(np.where(starts, pos, 0.0), axis=-1)
        size = np.bincount(group)[group].reshape(xs.shape)
        sorted_ranks = first + (size - 1) / 2.0
    ranks = np.empty_like(rows)
    ranks[np.arange(len(rows))[:, None], order] = sorted_ranks
    return np.where(np.isnan(x), np.nan, ranks.reshape(x.shape))


def cross_sectional_ic(pred, real, min_pairs: int = 5) -> np.ndarray:
    """Spearman rank correlation across the universe, one value per leading index.

    The cross-sectional alternative to :func:`spearman_ic`: at one cycle, the
    predictions that matured (made h bars ago) against the returns realised
    since, ranked across symbols. Averaged over recent cycles it measures a
    model's skill with N times more pairs per cycle than a per-symbol window,
    and without the overlap of consecutive long-horizon pairs.

    Parameters
    ----------
    pred, real : array_like, shape (..., N)
        Broadcast against each other; NaN entries drop out pairwise.
    min_pairs : int
        Fewer finite pairs than this gives NaN (no measurement this cycle).

    Returns
    -------
    ndarray, shape (...): in [-1, 1], NaN where unmeasured, 0 where either side's ranks are all equal.
    """
    p0, r0 = np.asarray(pred, dtype=float), np.asarray(real, dtype=float)
    p, r = np.broadcast_arrays(p0, r0)
    valid = np.isfinite(p) & np.isfinite(r)
    n = valid.sum(axis=-1)
    rp = _valid_ranks(p0, valid)
    rr = _valid_ranks(r0, valid)
    # The mean rank of n valid entries is (n + 1) / 2: centre the valid ranks, leave the rest at 0.
    centre = (n[..., None] + 1) / 2.0
    rp = np.where(valid, rp - centre, 0.0)
    rr = np.where(valid, rr - centre, 0.0)
    var = (rp * rp).sum(axis=-1) * (rr * rr).sum(axis=-1)
    ic = np.divide((rp * rr).sum(axis=-1), np.sqrt(var), out=np.zeros(n.shape), where=var > 0)
    return np.where(n >= min_pairs, np.clip(ic, -1.0, 1.0), np.nan)


def _valid_ranks(x, valid) -> np.ndarray:
    """Average ranks of ``x`` (broadcast to ``valid``'s shape) among the ``valid`` entries, 0 elsewhere.

    When ``x`` is broadcast (one realised return for every family) and its own
    finite entries are the valid ones, it is ranked once, not once per copy.
    """
    finite = np.isfinite(x)
    if x.shape != valid.shape and np.array_equal(np.broadcast_to(finite, valid.shape), valid):
        return np.broadcast_to(np.where(finite, average_ranks(np.where(finite, x, np.nan)), 0.0), valid.shape)
    x = np.broadcast_to(x, valid.shape)
    return np.where(valid, average_ranks(np.where(valid, x, np.nan)), 0.0)


def freshness(age_s, tau_s) -> np.ndarray:
    """Decay of a prediction with its age: exp(-max(age, 0) / tau_h).

    Parameters
    ----------
    age_s : array_like, shape (N,)
        Seconds since each symbol's predictions were made (a negative age from
        clock skew counts as 0; NaN gives NaN).
    tau_s : array_like, shape (H,)
        Decay time of each horizon in seconds (150 for 5m ... 7200 for 1d).

    Returns
    -------
    ndarray, shape (H, N)
        In [0, 1] (0 once exp underflows).
    """
    age = np.maximum(np.asarray(age_s, dtype=float), 0.0)
    return np.exp(-age[None, :] / np.asarray(tau_s, dtype=float)[:, None])


def capacity(adv_dollars, planned_dollars, kappa: float = 0.1) -> np.ndarray:
    """Liquidity discount: min(1, kappa * ADV / planned dollars).

    Parameters
    ----------
    adv_dollars : array_like, shape (N,)
        Average daily dollar volume of each symbol.
    planned_dollars : array_like, shape (N,)
        Absolute dollar size of the planned trade (pass ``abs()``). Nothing
        planned (<= 0 or NaN) gives 1.
    kappa : float
        Share of ADV a trade may take before it is discounted.

    Returns
    -------
    ndarray, shape (N,)
        In [0, 1]; 0 where a trade is planned but ADV is unknown or <= 0.
    """
    adv = np.asarray(adv_dollars, dtype=float)
    planned = np.asarray(planned_dollars, dtype=float)
    trading = planned > 0
    liquid = adv > 0
    # Rows that are not trading or not liquid may divide by 0 or NaN; they are replaced below.
    # fmin keeps an inf/inf ratio (infinite ADV and size) at 1 instead of NaN.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        cap = np.fmin(1.0, kappa * adv / planned)
    return np.where(trading, np.where(liquid, cap, 0.0), 1.0)


def stability(calib_err_hist, warmup: float = 0.5) -> np.ndarray:
    """1 / (1 + RMSE) of the finite calibration errors in each buffer.

    Parameters
    ----------
    calib_err_hist : array_like, shape (..., W)
        Recent calibration errors (e.g. (F, H, N, W)), NaN for empty slots.
    warmup : float
        Returned where a buffer holds no finite error yet.

    Returns
    -------
    ndarray, shape (...)
        In (0, 1], or ``warmup``.
    """
    e = np.asarray(calib_err_hist, dtype=float)
    finite = np.isfinite(e)
    count = sum_last(finite)
    sq = sum_last(np.where(finite, e * e, 0.0))
    rmse = np.sqrt(np.divide(sq, count, out=np.zeros(sq.shape), where=count > 0))
    return np.where(count > 0, 1.0 / (1.0 + rmse), warmup)


def confidence(ic, fresh, cap, stab, ic_floor: float = 0.01) -> np.ndarray:
    """c = max(IC, floor) * freshness * capacity * stability.

    Parameters
    ----------
    ic : array_like, shape (F, H, N)
        Information coefficients; NaN counts as the floor.
    fresh : array_like, shape (H, N)
    cap : array_like, shape (N,)
    stab : array_like, shape (F, H, N)
    ic_floor : float
        Lower bound of the IC term, so a model without a track record still
        counts a little.

    Returns
    -------
    ndarray, shape (F, H, N)
        In [0, max(IC, floor)] for freshness, capacity and stability in [0, 1].
    """
    # fmax ignores a NaN IC, leaving the floor.
    return np.fmax(np.asarray(ic, dtype=float), ic_floor) * fresh * cap * stab

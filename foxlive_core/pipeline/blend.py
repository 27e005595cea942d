"""Stage 6: blend the families' calibrated scores within each horizon into one alpha in bps.

Weights, per (horizon, symbol), over the F families:

1. Sigma = Pearson correlation of the families' recent scores
   (:func:`score_correlation`; identity until enough history exists).
2. mu = max(IC - 0.5 * cost_share, 0.01): each family's expected skill.
3. Ridge risk parity: w solves (Sigma + lambda * I) w = mu; clip w >= 0 and
   normalise to sum 1 (:func:`ridge_weights`). Correlated families share their
   weight, so two near-copies of one model do not count twice.
4. Temperature: w <- w^T / sum(w^T) (:func:`apply_temperature`). T < 1
   FLATTENS the weights towards equal and T > 1 sharpens them.

Mapping to basis points (:func:`horizon_alpha`). The calibrated score of
family f is s~_f = z_f * c_f, a z-score (in [-3, 3]) times its confidence,
and c_f carries the family's IC. Training learns, per (family, horizon), the
scale_fh = standard deviation of the horizon's forward return in bps. Then

    alpha_h = sum_f w_f * s~_f * scale_fh    [bps of return over h]

is Grinold's rule alpha = IC x volatility x score, with the other factors of
the confidence (freshness, capacity, stability) shrinking it further. A family
whose s~ (or scale) is NaN for a symbol is dropped and the remaining weights
are renormalised; no family left, or only families of weight 0, gives NaN.
"""

from __future__ import annotations

import numpy as np

from foxlive_core.pipeline.standardize import MIN_STD, append

# (Sigma + lambda I) is treated as singular when |det| <= this * prod |diagonal|
# (Hadamard's bound makes the ratio 1 for orthogonal rows and 0 for dependent ones).
SINGULAR_RTOL = 1e-12


def append_scores(score_hist, scores) -> np.ndarray:
    """Append this cycle's score vector to each (horizon, symbol) history.

    The vector is appended only when all F scores are finite, so the rows of
    the history stay aligned across families.

    Parameters
    ----------
    score_hist : array_like, shape (H, N, P, F)
        Past score vectors, oldest row first, NaN rows empty.
    scores : array_like, shape (F, H, N)
        This cycle's scores in the pipeline's (family, horizon, symbol) layout.

    Returns
    -------
    ndarray, shape (H, N, P, F)
    """
    row = np.moveaxis(np.asarray(scores, dtype=float), 0, -1)
    # A NaN anywhere blanks the whole row, so that the shared rule skips it as one.
    complete = np.isfinite(row).all(axis=-1)
    return append(score_hist, np.where(complete[..., None], row, np.nan), axis=-2)


def score_correlation(score_hist, min_points: int = 5) -> np.ndarray:
    """Pearson correlation of the families' scores over the complete rows of each history.

    Parameters
    ----------
    score_hist : array_like, shape (..., P, F)
        P past score vectors of F families; only rows where all F are finite count.
    min_points : int
        Fewer complete rows than this gives the identity.

    Returns
    -------
    corr : ndarray, shape (..., F, F)
        Ones on the diagonal; a family whose scores have (population) standard
        deviation below 1e-9 has correlation 0 with the others.
    """
    x = np.asarray(score_hist, dtype=float)
    shape, (p, f) = x.shape[:-2], x.shape[-2:]
    # (P, F, M) layout: every reduction below runs over contiguous rows of the M histories.
    xt = np.ascontiguousarray(np.moveaxis(x.reshape(int(np.prod(shape)), p, f), 0, -1))
    rows = np.isfinite(xt).all(axis=1)[:, None, :]
    n = rows.sum(axis=0)
    # Too-short histories divide by n = 0; they are replaced by the identity below.
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = np.where(rows, xt, 0.0)
        dev -= dev.sum(axis=0) / n
        dev *= rows
        cov = np.einsum("pfm,pgm->fgm", dev, dev) / n
        std = np.sqrt(cov[np.arange(f), np.arange(f)])
        corr = cov / (std[:, None] * std[None, :])
    live = std >= MIN_STD
    corr = np.where(live[:, None] & live[None, :], np.clip(corr, -1.0, 1.0), 0.0)
    eye = np.eye(f, dtype=bool)[..., None]
    corr = np.where(eye, 1.0, corr)
    corr = np.where(n >= min_points, corr, eye)
    return np.moveaxis(corr, -1, 0).reshape(shape + (f, f))


def ridge_weights(mu, corr, lam: float = 0.15) -> np.ndarray:
    """Ridge risk-parity weights: w proportional to (corr + lam * I)^-1 mu, clipped at 0.

    Parameters
    ----------
    mu : array_like, shape (..., F)
        Expected skill of each family.
    corr : array_like, shape (..., F, F)
        Correlation of the families' scores.
    lam : float
        Ridge penalty; pulls the weights towards proportional-to-mu.

    Returns
    -------
    w : ndarray, shape (..., F)
        Non-negative, summing to 1. Equal weights 1/F where the system is
        singular, the solution is not finite, or every weight clips to 0.
        F == 1 gives 1.
    """
    mu = np.asarray(mu, dtype=float)
    f = mu.shape[-1]
    eye = np.eye(f)
    a = np.asarray(corr, dtype=float) + lam * eye
    hadamard = np.abs(np.diagonal(a, axis1=-2, axis2=-1)).prod(axis=-1)
    # One singular matrix would make the batched solve raise for all: swap those for I first.
    with np.errstate(invalid="ignore", over="ignore"):
        singular = ~(np.abs(np.linalg.det(a)) > SINGULAR_RTOL * hadamard)
    w = np.linalg.solve(np.where(singular[..., None, None], eye, a), mu[..., None])[..., 0]
    w = np.maximum(w, 0.0)
    total = w.sum(axis=-1, keepdims=True)
    good = ~singular[..., None] & np.isfinite(total) & (total > 0)
    return np.where(good, np.divide(w, total, out=np.zeros(w.shape), where=good), 1.0 / f)


def apply_temperature(w, temperature) -> np.ndarray:
    """Temperature compression: w^T / sum(w^T) along the last axis.

    T < 1 FLATTENS the weights (w^T with T < 1 pulls them towards equal; T -> 0
    gives equal weights over the non-zero ones), T > 1 sharpens them towards
    the largest, T = 1 only renormalises. The reference implementation's docs
    claimed the opposite of its code; we keep the code's w^T.

    Parameters
    ----------
    w : array_like, shape (..., F)
        Non-negative weights, e.g. (H, N, F).
    temperature : float or array_like
        Broadcast against ``w``, e.g. shape (H, 1, 1) for one T per horizon.

    Returns
    -------
    ndarray, shape (..., F)
        Non-negative, summing to 1 (equal weights where ``w`` is all zero).
    """
    w = np.asarray(w, dtype=float)
    p = np.power(w, np.asarray(temperature, dtype=float))
    total = p.sum(axis=-1, keepdims=True)
    good = np.isfinite(total) & (total > 0)
    return np.where(good, np.divide(p, total, out=np.zeros(p.shape), where=good), 1.0 / w.shape[-1])


def blend_weights(ic, score_hist, cost_share: float, lam: float, min_points: int, temperature,
                  mu_floor: float = 0.01) -> np.ndarray:
    """Each horizon's family weights for each symbol.

    Parameters
    ----------
    ic : array_like, shape (F, H, N)
        Information coefficients; NaN counts as ``mu_floor``.
    score_hist : array_like, shape (H, N, P, F)
        Recent score vectors (see :func:`append_scores`).
    cost_share : float
        Per-family share of cost charged against IC: mu = max(IC - 0.5 * cost_share, mu_floor).
    lam : float
        Ridge penalty (0.15).
    min_points : int
        Complete score rows needed before the correlation is used (5).
    temperature : array_like, shape (H,)
        One temperature per horizon (0.75, 0.85, 0.90, 1, 1, 1); T < 1 flattens.
    mu_floor : float
        Lower bound of mu (0.01).

    Returns
    -------
    w : ndarray, shape (H, N, F)
        Non-negative, summing to 1 over families.
    """
    mu = np.moveaxis(np.fmax(np.asarray(ic, dtype=float) - 0.5 * cost_share, mu_floor), 0, -1)
    w = ridge_weights(mu, score_correlation(score_hist, min_points), lam)
    return apply_temperature(w, np.asarray(temperature, dtype=float)[:, None, None])


def horizon_alpha(calibrated, weights, bps_scale) -> np.ndarray:
    """Each horizon's alpha in bps: sum_f w_f * s~_f * scale_fh over the available families.

    Parameters
    ----------
    calibrated : array_like, shape (F, H, N)
        Calibrated scores s~ = z * c.
    weights : array_like, shape (H, N, F)
        Blend weights (see :func:`blend_weights`).
    bps_scale : array_like, shape (F, H)
        Std of each horizon's forward return in bps, learnt in training per family.

    Returns
    -------
    alpha_bps : ndarray, shape (H, N)
        Expected return over each horizon in bps. Families with a NaN s~ or
        scale are dropped and the other weights renormalised; NaN when none
        with positive weight is left.
    """
    contrib = np.asarray(calibrated, dtype=float) * np.asarray(bps_scale, dtype=float)[:, :, None]
    avail = np.isfinite(contrib)
    w = np.where(avail, np.moveaxis(np.asarray(weights, dtype=float), -1, 0), 0.0)
    total = w.sum(axis=0)
    num = np.einsum("fhn,fhn->hn", w, np.where(avail, contrib, 0.0))
    return np.divide(num, total, out=np.full(total.shape, np.nan), where=total > 0)

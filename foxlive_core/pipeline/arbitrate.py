"""Stage 7b: pick, per symbol, the horizon with the best cost-adjusted alpha.

net_h = |alpha_h| - cost_h, score_h = net_h / sqrt(bars_h / bars_min); the
best horizon is the argmax of the finite scores, and the symbol trades when
that score reaches theta = base + mult * spread_bps. The direction is the sign
of the chosen horizon's alpha, so a strong negative alpha is a short (the
score uses |alpha|: shorts are exactly as reachable as longs).

Shapes: H horizons, N symbols; alphas, costs, scores and thresholds in bps of
the horizon's return.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ArbitrationResult", "arbitrate", "select_horizon"]


@dataclass(frozen=True)
class ArbitrationResult:
    """Outcome of :func:`arbitrate`.

    Attributes
    ----------
    net : ndarray, shape (H, N)
        ``|alpha| - cost``, bps.
    score : ndarray, shape (H, N)
        ``net / sqrt(bars_h / bars_min)``, bps; NaN where alpha or cost is NaN.
    best : ndarray, shape (N,), int64
        Index of the best horizon (the shortest on ties), -1 when no score is finite.
    best_score : ndarray, shape (N,)
        Score of the best horizon; NaN when ``best == -1``.
    threshold : ndarray, shape (N,)
        ``base + mult * spread_bps``, bps.
    passes : ndarray, shape (N,), bool
        ``best_score >= threshold`` (False for NaN).
    direction : ndarray, shape (N,), int8
        ``sign(alpha[best])``: +1 long, -1 short, 0 when none or alpha is 0.
    """

    net: np.ndarray
    score: np.ndarray
    best: np.ndarray
    best_score: np.ndarray
    threshold: np.ndarray
    passes: np.ndarray
    direction: np.ndarray


def select_horizon(values: np.ndarray, best: np.ndarray) -> np.ndarray:
    """Each symbol's value at its chosen horizon.

    Parameters
    ----------
    values : ndarray, shape (H, N)
    best : ndarray, shape (N,), int
        Horizon indices from :attr:`ArbitrationResult.best`; -1 means none.

    Returns
    -------
    ndarray, shape (N,), float64
        ``values[best[i], i]``, NaN where ``best[i] == -1``.
    """
    vals = np.asarray(values, dtype=np.float64)
    idx = np.asarray(best)
    picked = np.take_along_axis(vals, np.maximum(idx, 0)[None, :], axis=0)[0]
    return np.where(idx >= 0, picked, np.nan)


def arbitrate(
    alpha_bps: np.ndarray,
    cost_bps: np.ndarray,
    horizon_bars: np.ndarray,
    spread_bps: np.ndarray,
    threshold_base: float = 2.0,
    threshold_spread_mult: float = 0.5,
    shortest_horizon=None,
) -> ArbitrationResult:
    """Choose the horizon and direction of every symbol and test it against the threshold.

    Parameters
    ----------
    alpha_bps : ndarray, shape (H, N)
        Signed horizon alphas, bps of the horizon's return.
    cost_bps : ndarray, shape (H, N)
        Trading costs, bps (:func:`foxlive_core.pipeline.costs.trading_cost_bps`).
    horizon_bars : ndarray, shape (H,)
        Bars in each horizon, all >= 1. Scores are divided by
        ``sqrt(bars_h / min(bars))``: with 5-minute bars and a 5-minute
        shortest horizon this is ``sqrt(h / 5)`` (docs/pipeline.md, stage 7b).
    spread_bps : ndarray, shape (N,)
        Quoted spread, bps; a NaN spread gives a NaN threshold, which never passes.
    threshold_base, threshold_spread_mult : float
        ``theta = threshold_base + threshold_spread_mult * spread_bps``.
    shortest_horizon : ndarray, shape (N,), int, optional
        Index of the shortest horizon each symbol may choose (a held position
        is judged only by its own horizon or longer ones); the others' scores
        are NaN. None or -1: every horizon.

    Returns
    -------
    ArbitrationResult
    """
    alpha = np.asarray(alpha_bps, dtype=np.float64)
    cost = np.asarray(cost_bps, dtype=np.float64)
    bars = np.asarray(horizon_bars, dtype=np.float64)
    if alpha.ndim != 2 or alpha.shape != cost.shape or bars.shape != (alpha.shape[0],):
        raise ValueError(
            f"alpha_bps and cost_bps must be (H, N) and horizon_bars (H,), got {alpha.shape}, {cost.shape}, {bars.shape}"
        )
    if not np.all(bars >= 1):
        raise ValueError(f"horizon_bars must all be >= 1, got {bars.tolist()}")

    net = np.abs(alpha) - cost
    score = net / np.sqrt(bars / bars.min())[:, None]
    if shortest_horizon is not None:
        allowed = np.arange(len(bars))[:, None] >= np.asarray(shortest_horizon)[None, :]
        score = np.where(allowed, score, np.nan)
    finite = np.isfinite(score)
    # argmax returns the first maximum, so ties go to the shortest horizon.
    best = np.argmax(np.where(finite, score, -np.inf), axis=0)
    best = np.where(finite.any(axis=0), best, -1)
    best_score = select_horizon(score, best)
    threshold = threshold_base + threshold_spread_mult * np.asarray(spread_bps, dtype=np.float64)
    passes = best_score >= threshold
    direction = np.nan_to_num(np.sign(select_horizon(alpha, best)), nan=0.0).astype(np.int8)
    return ArbitrationResult(
        net=net,
        score=score,
        best=best,
        best_score=best_score,
        threshold=threshold,
        passes=passes,
        direction=direction,
    )

"""Stage 6b: calibrate each horizon's alpha to the moves that follow it.

The blend (:mod:`foxlive_core.pipeline.blend`) gives an alpha in bps from
z-scores, confidences and training scales; nothing in that chain makes its size
equal the expected move, and the arbitration weighs it against costs in bps. So
each horizon's alpha is multiplied by a calibration slope kappa_h, the OLS slope
through the origin of the realised move on the alpha:

    kappa_h = (S_xy + P * kappa0_h) / (S_xx + P),   clipped to [0, max_slope]

- x: the uncalibrated alpha a symbol had h bars ago (bps); y: the return
  realised since (bps). With scores z-scored across the universe
  (``relative``), y is taken less its cross-sectional mean at that cycle: such
  an alpha ranks symbols, and the market's common move is not its to predict.
  With per-symbol scores (``standardization.mode: rolling``) the alpha is the
  symbol's own expected move and y is kept whole, so a universe of one symbol
  is calibrated too.
- S_xx, S_xy: sums of x^2 and x*y over the symbols and the last ``window``
  cycles at which the alphas matured, fed back every cycle like the IC.
- kappa0_h: the slope fitted on the validation rows at training, shrunk towards
  0 by its Newey-West significance
  (:func:`foxlive_core.models.training.fit_calibration`), kept with the models;
  P = ``prior_cycles`` x the mean S_xx per measured cycle, so the prior counts
  as that many cycles of evidence and fades as real ones accumulate.

A negative slope (the alpha points the wrong way) clips to 0: no trade.
Shapes: H horizons, N symbols, W cycles of history.
"""

from __future__ import annotations

import numpy as np

__all__ = ["calibration_sums", "calibration_slope"]


def calibration_sums(alpha_then, realised, relative: bool = True) -> np.ndarray:
    """This cycle's (S_xx, S_xy) per horizon from the alphas that have just matured.

    Parameters
    ----------
    alpha_then : array_like, shape (H, N)
        Uncalibrated alpha of each symbol h bars ago, bps; NaN where unknown.
    realised : array_like, shape (H, N)
        Return realised since, decimal; NaN where unknown.
    relative : bool
        The alpha ranks symbols (scores z-scored across the universe): the
        realised move is taken less its mean over the symbols where both are
        finite. False: the move is kept whole.

    Returns
    -------
    ndarray, shape (H, 2)
        (S_xx, S_xy) over the symbols where both are finite; NaN rows where
        fewer than 2 such symbols (``relative``) or none exist (no measurement
        this cycle).
    """
    x = np.asarray(alpha_then, dtype=np.float64)
    y = np.asarray(realised, dtype=np.float64) * 1e4
    ok = np.isfinite(x) & np.isfinite(y)
    n = ok.sum(axis=-1)
    if relative:
        mean_y = np.divide(np.where(ok, y, 0.0).sum(axis=-1), n, out=np.zeros(n.shape), where=n > 0)
        y = y - mean_y[:, None]
    x0 = np.where(ok, x, 0.0)
    dy = np.where(ok, y, 0.0)
    sums = np.stack([(x0 * x0).sum(axis=-1), (x0 * dy).sum(axis=-1)], axis=-1)
    return np.where((n >= (2 if relative else 1))[:, None], sums, np.nan)


def calibration_slope(sums_hist, prior_slope, prior_cycles: float, max_slope: float) -> np.ndarray:
    """kappa_h from the recent (S_xx, S_xy) history and the training prior.

    Parameters
    ----------
    sums_hist : array_like, shape (H, W, 2)
        Per-cycle sums, oldest first, NaN rows for cycles without a measurement.
    prior_slope : array_like, shape (H,)
        kappa0 from the validation rows.
    prior_cycles : float
        Weight of the prior in cycles of evidence (> 0).
    max_slope : float
        Upper clip of kappa.

    Returns
    -------
    ndarray, shape (H,), in [0, max_slope]; the prior (clipped) where nothing was measured.
    """
    s = np.asarray(sums_hist, dtype=np.float64)
    measured = np.isfinite(s[..., 0])
    cycles = measured.sum(axis=-1)
    sxx = np.where(measured, s[..., 0], 0.0).sum(axis=-1)
    sxy = np.where(measured, s[..., 1], 0.0).sum(axis=-1)
    weight = prior_cycles * np.divide(sxx, cycles, out=np.zeros(sxx.shape), where=cycles > 0)
    prior = np.asarray(prior_slope, dtype=np.float64)
    total = sxx + weight
    kappa = np.divide(sxy + weight * prior, total, out=prior.copy(), where=total > 0)
    return np.clip(kappa, 0.0, max_slope)

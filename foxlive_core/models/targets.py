"""Training targets built from bars: forward returns and barrier-touch labels.

Shapes: (T, N) arrays of bars (rows oldest first). A target at row t looks
only forward from t (rows t+1 .. t+h), which is exactly why the train /
validation split needs a purge gap of at least h bars.
"""

from __future__ import annotations

import numpy as np


def forward_returns(close: np.ndarray, horizon_bars: int) -> np.ndarray:
    """Simple return from the close of bar t to the close of bar t+h.

    Parameters
    ----------
    close : ndarray (T, N)
    horizon_bars : int, h >= 1

    Returns
    -------
    ndarray (T, N), decimal returns; NaN for the last h rows and wherever
    either close is missing.
    """
    out = np.full(close.shape, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[:-horizon_bars] = close[horizon_bars:] / close[:-horizon_bars] - 1.0
    return out


def barrier_labels(
    close: np.ndarray, high: np.ndarray, low: np.ndarray, horizon_bars: int, width: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Which barrier the price touches first within h bars after t.

    The upper barrier is close_t * (1 + width), the lower close_t * (1 - width).
    Bars t+1 .. t+h are scanned in order; the first bar whose high reaches the
    upper barrier (or whose low reaches the lower one) decides. A bar touching
    both is counted as touching neither first (label 0 for both), since bar
    data cannot tell which came first.

    Parameters
    ----------
    close, high, low : ndarray (T, N)
    horizon_bars : int
    width : ndarray (T, N), barrier half-width as a decimal return (> 0)

    Returns
    -------
    peak, valley : ndarray (T, N) of 1.0 / 0.0, NaN where undecidable (missing
        width or close, or fewer than h bars ahead).
    """
    T, _ = close.shape
    upper = close * (1.0 + width)
    lower = close * (1.0 - width)
    decided = np.zeros(close.shape, dtype=bool)
    peak = np.zeros(close.shape)
    valley = np.zeros(close.shape)
    for k in range(1, horizon_bars + 1):
        hi = np.full(close.shape, np.nan)
        lo = np.full(close.shape, np.nan)
        hi[: T - k] = high[k:]
        lo[: T - k] = low[k:]
        with np.errstate(invalid="ignore"):
            up = hi >= upper
            down = lo <= lower
        first_up = up & ~down & ~decided
        first_down = down & ~up & ~decided
        peak[first_up] = 1.0
        valley[first_down] = 1.0
        decided |= up | down
    invalid = ~np.isfinite(close) | ~np.isfinite(width) | (width <= 0)
    invalid[T - horizon_bars :] = True
    peak[invalid] = np.nan
    valley[invalid] = np.nan
    return peak, valley

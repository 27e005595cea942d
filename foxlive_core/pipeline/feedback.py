"""Realised-return feedback: each horizon's predictions of h bars ago meet the return realised since.

Every cycle pushes its raw predictions (and, once blended, its alpha) into one
ring per horizon, holding the last h cycles with their times. A cycle finds,
for each horizon, the slot made at the bar h bars before its own (by time, so
a gap in the cycles never pairs a prediction with the wrong return) and pairs
it with the close-to-close return over those h bars. The matured pairs feed
the IC (confidence), the calibration errors (stability) and the calibration
slope of the alphas.

Shapes: Fam families, H horizons, N symbols, L bars of the cycle's window;
ring i holds h_i slots, oldest first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Matured", "mature", "push"]


@dataclass(frozen=True)
class Matured:
    """The pairs that matured at this cycle (NaN where a horizon has none yet).

    pred : (Fam, H, N) raw predictions made h bars ago (decimal returns)
    alpha : (H, N) the alphas (bps) blended from them
    realised : (H, N) close[-1] / close[-1-h] - 1, decimal
    """

    pred: np.ndarray
    alpha: np.ndarray
    realised: np.ndarray


def mature(pending_time, pending_pred, pending_alpha, close, window_ns, horizon_bars) -> Matured:
    """Pair each horizon's predictions of h bars ago with the return realised since.

    Parameters
    ----------
    pending_time : sequence of H int64 arrays, shape (h_i,)
        Cycle time (ns) of each ring slot; int64 min for an empty slot.
    pending_pred : sequence of H arrays, shape (h_i, Fam, N)
    pending_alpha : sequence of H arrays, shape (h_i, N)
    close : ndarray, shape (L, N)
        The window's closes after missing-bar filling, last row the cycle's bar.
    window_ns : ndarray of int64, shape (L,)
        The window's bar times (ns).
    horizon_bars : sequence of H ints

    Returns
    -------
    Matured
    """
    H = len(horizon_bars)
    n_fam, N = pending_pred[0].shape[1:]
    pred = np.full((n_fam, H, N), np.nan)
    alpha = np.full((H, N), np.nan)
    realised = np.full((H, N), np.nan)
    for i, h in enumerate(horizon_bars):
        if len(window_ns) <= h:
            continue
        slot = np.flatnonzero(pending_time[i] == window_ns[-1 - h])
        if slot.size:
            pred[:, i, :] = pending_pred[i][slot[-1]]
            alpha[i] = pending_alpha[i][slot[-1]]
            with np.errstate(invalid="ignore", divide="ignore"):
                realised[i] = close[-1] / close[-1 - h] - 1.0
    return Matured(pred, alpha, realised)


def push(ring: np.ndarray, value) -> np.ndarray:
    """A new ring with ``value`` as its newest slot and the oldest dropped (NaN values are kept as such).

    ring : (h, ...); value : ring's shape without the first axis.
    """
    return np.concatenate([ring[1:], np.asarray(value, dtype=ring.dtype)[None]], axis=0)

"""Stage 9: target weights and share orders.

z = clip(alpha / sigma_h, -z_max, z_max) and w = z * (max_weight / z_max) * gate,
capped at |w| <= weight_cap. Exits go to 0; symbols neither entering nor
exiting want their current weight, entries their sized one. When the book's
gross sum |w| of these wanted weights exceeds gross_target, every one is
scaled down by the same factor. Then the no-trade band: a symbol (not exiting)
whose scaled weight is within the band of its current weight keeps it, and the
symbols that do trade share what the gross target leaves beside the kept ones
(scaled down once more if needed), so the gross never exceeds the target
through the band (unless the kept weights alone do: then every weight is
scaled, the band notwithstanding).

The band is applied after the gross scaling because, once the book is at its
gross target, entries sized before scaling are a few times their scaled
weights: a band tested there is always exceeded, and every position is
re-traded each cycle by the small changes of the scale factor (measured at
three times the default planted signal: 25,000 orders, turnover 67x in 21
sessions; benchmarks/README.md).

Shapes: N symbols. Weights are signed fractions of portfolio value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SizingResult", "order_shares", "target_weights"]


@dataclass(frozen=True)
class SizingResult:
    """Outcome of :func:`target_weights`.

    Attributes
    ----------
    target : ndarray, shape (N,)
        Target signed weights, after gross scaling and the no-trade band.
    z : ndarray, shape (N,)
        ``clip(alpha / sigma, -z_max, z_max)``; NaN where alpha or sigma is unknown.
    raw_weight : ndarray, shape (N,)
        ``z * (max_weight / z_max) * gate``, before the cap, band and scaling.
    reason : ndarray, shape (N,), str
        For entering symbols: 'no_alpha' (alpha or sigma unknown, weight kept),
        'within_no_trade_band' (weight kept), 'weight_capped' (|w| cut to
        weight_cap); for any symbol whose weight was meant to stay but moves
        under gross scaling: 'gross_scaled'; '' otherwise (exits and holds
        carry the reasons of the earlier stages).
    gross_scale : float
        Factor applied to the wanted weights of the symbols that trade; 1.0
        when the gross was within target.
    """

    target: np.ndarray
    z: np.ndarray
    raw_weight: np.ndarray
    reason: np.ndarray
    gross_scale: float


def target_weights(
    alpha_bps: np.ndarray,
    sigma_h_bps: np.ndarray,
    gate: np.ndarray,
    current_weight: np.ndarray,
    enter: np.ndarray,
    exit: np.ndarray,
    max_weight: float = 0.05,
    z_max: float = 3.0,
    weight_cap: float = 0.20,
    no_trade_band: float = 0.008,
    gross_target: float = 0.5,
) -> SizingResult:
    """Target weight of every symbol.

    Parameters
    ----------
    alpha_bps : ndarray, shape (N,)
        Alpha of the chosen horizon, bps.
    sigma_h_bps : ndarray, shape (N,)
        Volatility of the chosen horizon, bps (the same units as alpha, so z is
        unit-free). Values <= 0 count as unknown: a zero volatility would size
        a maximal position on no information.
    gate : ndarray, shape (N,)
        Barrier gate in [g_min, 1].
    current_weight : ndarray, shape (N,)
        Current signed weights; must be finite (0 for no position).
    enter : ndarray, shape (N,), bool
        Symbols allowed to move to their sized weight.
    exit : ndarray, shape (N,), bool
        Symbols whose position is closed (target 0); exit wins over enter and
        is not subject to the no-trade band (a small position still closes).
    max_weight, z_max : float
        ``|z| = z_max`` maps to ``max_weight`` (before the gate).
    weight_cap : float
        Hard cap on |w| of an entry.
    no_trade_band : float
        A symbol (not exiting) whose weight after gross scaling is within
        this of its current weight keeps the current weight.
    gross_target : float
        Maximum sum |target|; above it the wanted weights are scaled proportionally.

    Returns
    -------
    SizingResult
    """
    alpha = np.asarray(alpha_bps, dtype=np.float64)
    sigma = np.asarray(sigma_h_bps, dtype=np.float64)
    current = np.asarray(current_weight, dtype=np.float64)
    enter = np.asarray(enter, dtype=bool)
    exit = np.asarray(exit, dtype=bool)
    if not np.all(np.isfinite(current)):
        bad = np.flatnonzero(~np.isfinite(current))
        raise ValueError(
            f"current_weight must be finite (0 for no position); {bad.size} value(s) are not, first at index {bad[0]}"
        )

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = np.clip(alpha / np.where(sigma > 0, sigma, np.nan), -z_max, z_max)
    raw = z * (max_weight / z_max) * np.asarray(gate, dtype=np.float64)
    capped = np.clip(raw, -weight_cap, weight_cap)

    entering = enter & ~exit
    no_alpha = entering & ~np.isfinite(raw)
    moves = entering & ~no_alpha
    wanted = np.where(exit, 0.0, np.where(moves, capped, current))
    first_scale = _scale_to(np.abs(wanted).sum(), gross_target)
    scaled = wanted * first_scale
    keep = ~exit & (np.abs(scaled - current) < no_trade_band)
    # The trading symbols share what the gross target leaves beside the kept ones.
    room = gross_target - np.abs(np.where(keep, current, 0.0)).sum()
    need = np.abs(np.where(keep, 0.0, scaled)).sum()
    if room >= 0.0:
        second_scale = _scale_to(need, room)
        target = np.where(keep, current, scaled * second_scale)
        scale = first_scale * second_scale
    else:  # the kept weights alone exceed the target: scale them all
        pre = np.where(keep, current, scaled)
        scale = _scale_to(np.abs(pre).sum(), gross_target)
        target = pre * scale
        scale *= first_scale
    in_band = moves & keep
    # Symbols meant to keep their weight that now trade only because of the scaling.
    scaled_only = (wanted == current) & (target != current)
    reason = np.select(
        [scaled_only, no_alpha, in_band, moves & (np.abs(raw) > weight_cap)],
        ["gross_scaled", "no_alpha", "within_no_trade_band", "weight_capped"],
        default="",
    ).astype(str)
    return SizingResult(target=target, z=z, raw_weight=raw, reason=reason, gross_scale=float(scale))


def _scale_to(gross: float, limit: float) -> float:
    """The factor that brings ``gross`` down to ``limit`` (1.0 when it is within it; 0.0 for no room)."""
    return limit / gross if gross > limit else 1.0


def order_shares(
    target: np.ndarray,
    current_weight: np.ndarray,
    portfolio_value: float,
    price: np.ndarray,
) -> np.ndarray:
    """Signed share quantities that move each symbol from its current to its target weight.

    ``trunc((target - current) * portfolio_value / price)``, rounded toward zero
    so that an order never exceeds the intended dollar change.

    Parameters
    ----------
    target, current_weight : ndarray, shape (N,)
        Signed weights.
    portfolio_value : float
        Portfolio value in dollars.
    price : ndarray, shape (N,)
        Price per share; NaN or <= 0 gives no order.

    Returns
    -------
    ndarray, shape (N,), int64
        + buy, - sell; 0 where the price or a weight is unusable, or where the
        count does not fit in int64 (a garbage price such as 1e-300).
    """
    px = np.asarray(price, dtype=np.float64)
    dw = np.asarray(target, dtype=np.float64) - np.asarray(current_weight, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        shares = np.trunc(dw * portfolio_value / np.where(px > 0, px, np.nan))
    return np.where(np.abs(shares) < 2.0**63, shares, 0.0).astype(np.int64)

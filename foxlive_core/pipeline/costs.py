"""Stage 7a: the cost of trading each horizon, in basis points of the horizon's return.

cost_h = k1 * spread_bps + k2 * sigma_h * 1e4 + k3 * impact_h + execution_bps   (docs/pipeline.md, stage 7a)

The impact term needs the size of the order before the sizer has run. We take
the order the sizer *would* place if horizon h were the one chosen (same z,
same max_weight / z_max, the current weight as the starting point), without
the barrier gate, the no-trade band or gross scaling, which come later and
only ever shrink the order; so the cost is a slight, conservative over-estimate
(:func:`planned_order_dollars`).

Shapes: H horizons, N symbols. Volatility is per bar as a decimal; everything
returned in bps is bps of the horizon's return.
"""

from __future__ import annotations

import numpy as np

__all__ = ["horizon_sigma", "impact_bps", "planned_order_dollars", "trading_cost_bps"]


def horizon_sigma(vol_per_bar: np.ndarray, horizon_bars: np.ndarray) -> np.ndarray:
    """Volatility over each horizon: ``vol_per_bar * sqrt(bars in h)``.

    Parameters
    ----------
    vol_per_bar : ndarray, shape (N,)
        Per-bar return volatility, decimal (0.0005 = 5 bps). NaN propagates.
    horizon_bars : ndarray, shape (H,)
        Bars spanned by each horizon, all >= 1.

    Returns
    -------
    ndarray, shape (H, N)
        Horizon volatility, decimal (multiply by 1e4 for bps).
    """
    vol = np.asarray(vol_per_bar, dtype=np.float64)
    bars = np.asarray(horizon_bars, dtype=np.float64)
    if vol.ndim != 1 or bars.ndim != 1:
        raise ValueError(f"vol_per_bar must be (N,) and horizon_bars (H,), got {vol.shape} and {bars.shape}")
    if not np.all(bars >= 1):
        raise ValueError(f"horizon_bars must all be >= 1, got {bars.tolist()}")
    return np.sqrt(bars)[:, None] * vol[None, :]


def impact_bps(
    order_dollars: np.ndarray,
    adv_dollars: np.ndarray,
    bps_at_reference: float = 10.0,
    reference_participation: float = 0.01,
) -> np.ndarray:
    """Square-root market impact of an order, in bps.

    ``impact = bps_at_reference * sqrt((|q| / ADV) / reference_participation)``,
    i.e. ``bps_at_reference`` bps when the order is ``reference_participation``
    of the average daily dollar volume.

    Parameters
    ----------
    order_dollars : ndarray, shape (H, N) or (N,)
        Order size q in dollars; the sign is ignored. NaN propagates.
    adv_dollars : ndarray, shape (N,)
        Average daily dollar volume; broadcast against ``order_dollars``.
    bps_at_reference : float
        Impact in bps at the reference participation.
    reference_participation : float
        Participation (fraction of ADV) at which the impact is ``bps_at_reference``; > 0.

    Returns
    -------
    ndarray, broadcast shape of the inputs
        0 where q = 0 (whatever the ADV); +inf where q > 0 and ADV is <= 0 or
        NaN, so an order in a symbol without a known volume never looks cheap.
    """
    q = np.abs(np.asarray(order_dollars, dtype=np.float64))
    adv = np.asarray(adv_dollars, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = bps_at_reference * np.sqrt((q / adv) / reference_participation)
    unknown_volume = (q > 0) & ~(adv > 0)
    return np.where(q == 0, 0.0, np.where(unknown_volume, np.inf, out))


def trading_cost_bps(
    spread_bps: np.ndarray,
    sigma_h: np.ndarray,
    impact: np.ndarray,
    k1: float = 1.0,
    k2: float = 0.15,
    k3: float = 1.0,
    execution_bps: float = 0.0,
) -> np.ndarray:
    """Expected cost of a round of trading at each horizon, in bps.

    ``cost = k1 * spread_bps + k2 * sigma_h * 1e4 + k3 * impact + execution_bps``,
    the last term being what the broker charges per trade on top of the quote
    (fee plus slippage; the reference design's formula leaves it out, which makes
    every trade look cheaper than it is; docs/pipeline.md, stage 7a). A term whose
    coefficient is 0 is left out, so a disabled term with an infinite or NaN
    input (e.g. unknown ADV with ``k3 = 0``) does not turn the cost into NaN.

    Parameters
    ----------
    spread_bps : ndarray, shape (N,)
        Quoted spread in bps of the mid.
    sigma_h : ndarray, shape (H, N)
        Horizon volatility, decimal (from :func:`horizon_sigma`).
    impact : ndarray, shape (H, N)
        Impact in bps (from :func:`impact_bps`).
    k1, k2, k3 : float
        Weights of the spread, volatility and impact terms.
    execution_bps : float
        Known per-trade charges of the broker, bps of notional (default 0).

    Returns
    -------
    ndarray, shape (H, N)
        Cost in bps of the horizon's return; NaN where a used input is NaN.
    """
    spread = np.asarray(spread_bps, dtype=np.float64)
    sig = np.asarray(sigma_h, dtype=np.float64)
    imp = np.asarray(impact, dtype=np.float64)
    cost = np.zeros(np.broadcast_shapes(spread.shape, sig.shape, imp.shape))
    if k1 != 0:
        cost += k1 * spread
    if k2 != 0:
        cost += k2 * (sig * 1e4)
    if k3 != 0:
        cost += k3 * imp
    return cost + execution_bps


def planned_order_dollars(
    alpha_bps: np.ndarray,
    sigma_h: np.ndarray,
    current_weight: np.ndarray,
    portfolio_value: float,
    max_weight: float,
    z_max: float,
) -> np.ndarray:
    """Dollar size of the order the sizer would place if horizon h were chosen.

    ``w_h = clip(alpha / (sigma_h * 1e4), -z_max, z_max) * max_weight / z_max``
    and ``q = |w_h - current_weight| * portfolio_value``. This is the sizer's
    formula (stage 9) before the barrier gate, the no-trade band and gross
    scaling; those only shrink the order, so the impact it implies is an upper
    bound of the impact actually paid.

    Parameters
    ----------
    alpha_bps : ndarray, shape (H, N)
        Horizon alphas, bps.
    sigma_h : ndarray, shape (H, N)
        Horizon volatility, decimal. Values <= 0 count as unknown (NaN): a
        zero volatility would otherwise size an infinite z.
    current_weight : ndarray, shape (N,)
        Current signed weights (fractions of portfolio value).
    portfolio_value : float
        Portfolio value in dollars.
    max_weight, z_max : float
        Sizing parameters (stage 9).

    Returns
    -------
    ndarray, shape (H, N)
        Unsigned order size in dollars; NaN where alpha or sigma is unknown.
    """
    alpha = np.asarray(alpha_bps, dtype=np.float64)
    sig_bps = np.asarray(sigma_h, dtype=np.float64) * 1e4
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = np.clip(alpha / np.where(sig_bps > 0, sig_bps, np.nan), -z_max, z_max)
    w = z * (max_weight / z_max)
    return np.abs(w - np.asarray(current_weight, dtype=np.float64)) * portfolio_value

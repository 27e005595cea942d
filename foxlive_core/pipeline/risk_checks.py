"""Stage 10 (and the kill switch of stage 1): per-trade limits and portfolio limits.

A change of weight is *risk-increasing* when it grows |w| or flips its sign,
and *risk-reducing* otherwise (towards zero, same side). Risk-reducing changes
always pass; risk-increasing ones are blocked by the kill switch, the position
limit and the gross-exposure limit. A blocked flip keeps its risk-reducing part:
the position is closed (target 0); any other blocked symbol keeps its current
weight. So a halted book still exits a long its models now want short.

Portfolio limits (daily loss, drawdown) decide whether the kill switch trips;
keeping it on until an operator resumes the book is the caller's job.

Shapes: N symbols; weights are signed fractions of portfolio value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GROSS_TOLERANCE", "PortfolioRisk", "RiskCheckResult", "portfolio_risk", "trade_risk_checks"]

# Gross exposure may exceed its limit by this much before trades are blocked:
# weights scaled to exactly the limit must not fail it on rounding.
GROSS_TOLERANCE = 1e-12


@dataclass(frozen=True)
class RiskCheckResult:
    """Outcome of :func:`trade_risk_checks`.

    Attributes
    ----------
    allowed : ndarray, shape (N,), bool
        The change to ``final_target`` may be sent (True also where nothing changes).
    reason : ndarray, shape (N,), str
        'kill_switch_active', 'jump_bar' / 'filled_bar' / 'repaired_bar', 'position_limit' or 'gross_limit' for a blocked
        change (first that applies), also where a blocked flip was cut to a close (then allowed); '' otherwise.
    final_target : ndarray, shape (N,)
        ``target`` where it passed, 0 where a blocked flip closes the position, else the current weight.
    gross_after : float
        sum |final_target|.
    """

    allowed: np.ndarray
    reason: np.ndarray
    final_target: np.ndarray
    gross_after: float


@dataclass(frozen=True)
class PortfolioRisk:
    """Outcome of :func:`portfolio_risk`.

    Attributes
    ----------
    daily_pnl : float
        ``portfolio_value - start_of_day_value``, dollars.
    daily_return : float
        ``daily_pnl / start_of_day_value``, decimal.
    drawdown : float
        ``max(0, 1 - portfolio_value / high_water_mark)``, fraction >= 0.
    gross_exposure, net_exposure : float
        The exposures given, as fractions of portfolio value.
    breach : bool
        A limit is broken: the kill switch must trip.
    reason : str
        'daily_loss_limit', 'drawdown_limit' (when only the drawdown is broken) or ''.
    detail : str
        The broken figures and their limits, e.g.
        'daily loss -2.31% beyond limit -2.00%'; '' when no breach.
    """

    daily_pnl: float
    daily_return: float
    drawdown: float
    gross_exposure: float
    net_exposure: float
    breach: bool
    reason: str
    detail: str


def trade_risk_checks(
    target: np.ndarray,
    current_weight: np.ndarray,
    max_position_weight: float = 0.20,
    max_gross_exposure: float = 1.0,
    halted: bool = False,
    bar_repair=None,
) -> RiskCheckResult:
    """Allow or block each symbol's change from ``current_weight`` to ``target``.

    Parameters
    ----------
    target, current_weight : ndarray, shape (N,)
        Signed weights; both must be finite.
    max_position_weight : float
        A risk-increasing change to |target| above this is blocked.
    max_gross_exposure : float
        When sum |w| after every otherwise-allowed change exceeds this (by more
        than ``GROSS_TOLERANCE``), all risk-increasing changes are blocked and
        only risk-reducing ones go through.
    halted : bool
        Kill switch on: every risk-increasing change is blocked.
    bar_repair : ndarray of str, shape (N,), optional
        What is suspect about each symbol's current bar ('' for nothing; 'jump', 'filled' or 'repaired'):
        a risk-increasing change on a suspect bar is blocked with reason '<that>_bar' (risk-reducing
        ones pass).

    Returns
    -------
    RiskCheckResult
    """
    tgt = np.asarray(target, dtype=np.float64)
    cur = np.asarray(current_weight, dtype=np.float64)
    if tgt.shape != cur.shape or not (np.all(np.isfinite(tgt)) and np.all(np.isfinite(cur))):
        raise ValueError(f"target and current_weight must be finite arrays of one shape, got {tgt.shape} and {cur.shape}")

    increasing = (np.abs(tgt) > np.abs(cur)) | (np.sign(tgt) * np.sign(cur) < 0)
    kill = increasing & halted
    repair = np.full(tgt.shape, "", dtype=object) if bar_repair is None else np.asarray(bar_repair, dtype=object)
    mended = increasing & ~kill & (repair != "")
    position = increasing & ~kill & ~mended & (np.abs(tgt) > max_position_weight)
    allowed = ~(kill | mended | position)
    flip = np.sign(tgt) * np.sign(cur) < 0
    gross = np.abs(np.where(allowed, tgt, np.where(flip, 0.0, cur))).sum()
    gross_block = increasing & allowed & (gross > max_gross_exposure + GROSS_TOLERANCE)
    allowed &= ~gross_block
    closes = ~allowed & flip  # a blocked flip: its close alone reduces risk, and is sent
    final = np.where(allowed, tgt, np.where(closes, 0.0, cur))
    reason = np.select(
        [kill, mended, position, gross_block],
        ["kill_switch_active", (repair + "_bar").astype(str), "position_limit", "gross_limit"], default=""
    ).astype(str)
    return RiskCheckResult(allowed=allowed | closes, reason=reason, final_target=final,
                           gross_after=float(np.abs(final).sum()))


def portfolio_risk(
    portfolio_value: float,
    start_of_day_value: float,
    high_water_mark: float,
    gross_exposure: float,
    net_exposure: float,
    daily_loss_limit: float = 0.02,
    drawdown_limit: float = 0.10,
) -> PortfolioRisk:
    """Daily P&L and drawdown of the book, and whether they break the kill-switch limits.

    Parameters
    ----------
    portfolio_value : float
        Current value (cash + positions at market), dollars; must be finite.
    start_of_day_value : float
        Value at the start of the session, dollars; > 0.
    high_water_mark : float
        Highest value seen, dollars; > 0. A value above it gives drawdown 0.
    gross_exposure, net_exposure : float
        Sum of |position value| and of signed position value, dollars
        (reported as fractions of ``portfolio_value``).
    daily_loss_limit : float
        Breach when ``daily_return < -daily_loss_limit``.
    drawdown_limit : float
        Breach when ``drawdown > drawdown_limit``.

    Returns
    -------
    PortfolioRisk
    """
    pv = float(portfolio_value)
    sod = float(start_of_day_value)
    hwm = float(high_water_mark)
    if not (np.isfinite(pv) and np.isfinite(sod) and np.isfinite(hwm)) or sod <= 0 or hwm <= 0:
        raise ValueError(
            f"portfolio_value must be finite and start_of_day_value, high_water_mark finite and > 0; "
            f"got {pv!r}, {sod!r}, {hwm!r}"
        )
    pnl = pv - sod
    ret = pnl / sod
    drawdown = max(0.0, 1.0 - pv / hwm)
    reason, detail = limit_breach(ret, drawdown, daily_loss_limit, drawdown_limit)
    return PortfolioRisk(
        daily_pnl=pnl,
        daily_return=ret,
        drawdown=drawdown,
        gross_exposure=float(gross_exposure) / pv if pv else float("nan"),
        net_exposure=float(net_exposure) / pv if pv else float("nan"),
        breach=bool(reason),
        reason=reason,
        detail=detail,
    )


def limit_breach(daily_return: float, drawdown: float, daily_loss_limit: float = 0.02,
                 drawdown_limit: float = 0.10) -> tuple[str, str]:
    """Which kill-switch limit a book's daily return and drawdown (fractions) break, and by how much.

    Returns (reason, detail): reason ``daily_loss_limit`` when ``daily_return < -daily_loss_limit``, else
    ``drawdown_limit`` when ``drawdown > drawdown_limit``, else ''; detail names every breach with its
    value and limit ('' within limits). The engine's halt reason and the risk sensor's are
    ``f"{reason}: {detail}"``.
    """
    loss_breach = daily_return < -daily_loss_limit
    dd_breach = drawdown > drawdown_limit
    details = []
    if loss_breach:
        details.append(f"daily loss {daily_return:.2%} beyond limit {-daily_loss_limit:.2%}")
    if dd_breach:
        details.append(f"drawdown {drawdown:.2%} beyond limit {drawdown_limit:.2%}")
    reason = "daily_loss_limit" if loss_breach else "drawdown_limit" if dd_breach else ""
    return reason, "; ".join(details)

"""Stage 2: the spread / quote gate.

A symbol is tradable this cycle only when its quote is sane, fresh and tight.
Every symbol gets a spread in basis points of the mid and one reason code, the
first that applies in this priority order:

``invalid_quote``
    bid or ask is NaN/inf, or bid <= 0, or ask <= 0.
``crossed_quote``
    ask < bid (a locked quote, ask == bid, passes with a spread of 0).
``stale_quote``
    the quote is older than ``max_age_s`` seconds, or its age is unknown (NaN).
``spread_too_wide``
    spread_bps > ``max_spread_bps``.

``ok`` is True exactly where the reason is ``''``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REASONS = ("invalid_quote", "crossed_quote", "stale_quote", "spread_too_wide")


@dataclass(frozen=True)
class QuoteGateResult:
    """Outcome of :func:`quote_gate` for N symbols.

    Attributes
    ----------
    spread_bps : ndarray, shape (N,)
        (ask - bid) / mid * 1e4; NaN for invalid or crossed quotes.
    ok : ndarray of bool, shape (N,)
        True where the symbol passed every check.
    reason : ndarray of str, shape (N,)
        The first failed check (see the module docstring), ``''`` when ``ok``.
    """

    spread_bps: np.ndarray
    ok: np.ndarray
    reason: np.ndarray


def quote_gate(bid, ask, quote_age_s, max_spread_bps: float = 12.0, max_age_s: float = 0.2) -> QuoteGateResult:
    """Check every symbol's quote and measure its spread.

    Parameters
    ----------
    bid, ask : array_like, shape (N,)
        Best bid and ask prices in the quote currency.
    quote_age_s : array_like, shape (N,)
        Age of each quote in seconds at decision time; NaN when unknown.
    max_spread_bps : float
        Widest acceptable spread in basis points of the mid (12 by default).
    max_age_s : float
        Oldest acceptable quote in seconds (0.2 live; a replay allows one bar).

    Returns
    -------
    QuoteGateResult
    """
    bid = np.asarray(bid, dtype=float)
    ask = np.asarray(ask, dtype=float)
    age = np.asarray(quote_age_s, dtype=float)

    invalid = ~(np.isfinite(bid) & np.isfinite(ask) & (bid > 0) & (ask > 0))
    crossed = ~invalid & (ask < bid)
    priced = ~(invalid | crossed)
    # Bad quotes may divide by a zero or infinite mid; their spread is discarded below.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        spread = np.where(priced, (ask - bid) / ((bid + ask) * 0.5) * 1e4, np.nan)
    # `not age <= max` also catches a NaN age.
    stale = ~(age <= max_age_s)
    wide = spread > max_spread_bps

    reason = np.select([invalid, crossed, stale, wide], list(REASONS), default="")
    return QuoteGateResult(spread_bps=spread, ok=reason == "", reason=reason)

"""Where a simulated broker gets the quotes it fills against: a venue.

A venue is anything with ``quotes(symbols, at) -> QuoteSnapshot``: the market
data source itself (:class:`foxlive_core.data.protocol.MarketData`: a live
paper book fills against the market's quote at the order's time), or a
:class:`SimulatedVenue` showing the quotes posted to it (a replay posts each
cycle's quotes; tests post their own). The engine never hands quotes to a
broker: a paper broker asks its venue.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from foxlive_core.data.types import QuoteSnapshot


class Venue(Protocol):
    def quotes(self, symbols, at) -> QuoteSnapshot:
        """The quote of each of ``symbols`` at time ``at``; a symbol without one has NaN prices and zero sizes."""


class SimulatedVenue:
    """A venue that shows the snapshot posted last, whatever the time asked."""

    def __init__(self) -> None:
        self._posted: QuoteSnapshot | None = None
        self._column: dict[str, int] = {}

    def post(self, quotes: QuoteSnapshot) -> None:
        """Show ``quotes`` from now on (they replace what was posted before)."""
        if self._posted is None or quotes.symbols != self._posted.symbols:
            self._column = {s: i for i, s in enumerate(quotes.symbols)}
        self._posted = quotes

    def quotes(self, symbols, at) -> QuoteSnapshot:
        symbols = tuple(symbols)
        posted = self._posted
        rows = np.array([self._column.get(s, -1) for s in symbols], dtype=np.intp)
        shown = rows >= 0
        if posted is None or not shown.any():
            n = len(symbols)
            return QuoteSnapshot(symbols, np.full(n, np.nan), np.full(n, np.nan), np.zeros(n), np.zeros(n),
                                 np.full(n, np.datetime64("NaT", "ns")))
        pick = np.maximum(rows, 0)
        return QuoteSnapshot(
            symbols,
            np.where(shown, posted.bid[pick], np.nan),
            np.where(shown, posted.ask[pick], np.nan),
            np.where(shown, posted.bid_size[pick], 0.0),
            np.where(shown, posted.ask_size[pick], 0.0),
            np.where(shown, posted.time[pick], np.datetime64("NaT", "ns")),
        )

"""The market-data interface every source implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from foxlive_core.calendar import TradingCalendar
from foxlive_core.data.types import BarPanel, QuoteSnapshot


@runtime_checkable
class MarketData(Protocol):
    """OHLCV bars, quotes and liquidity for a universe, on one calendar and bar interval.

    Every method raises :class:`foxlive_core.errors.DataError` naming any
    symbol it does not know. Times are timezone-aware; naive times are refused.

    Optional attributes: ``quotes_are_realtime`` (quotes come from a live feed, judged by
    their age in ms rather than against the bar) and ``bars_threadsafe`` (``bars`` may be
    called on a replay's worker thread while the engine asks for quotes and ADV on its own);
    both False when absent.
    """

    calendar: TradingCalendar

    @property
    def symbols(self) -> tuple[str, ...]:
        """Every symbol this source can serve."""

    @property
    def first_time(self) -> pd.Timestamp:
        """The oldest bar close time (UTC) the source can serve."""

    @property
    def last_time(self) -> pd.Timestamp:
        """The newest bar close time (UTC) the source can serve (for the simulation: its horizon)."""

    def bars(self, symbols, start, end) -> BarPanel:
        """Bars whose close time lies in [start, end], one row per calendar bar
        (a bar the source lacks is a NaN row for that symbol)."""

    def bars_ending_at(self, symbols, end, count: int) -> BarPanel:
        """The last ``count`` calendar bars with close time <= end."""

    def quotes(self, symbols, at) -> QuoteSnapshot:
        """The latest quote per symbol at or before ``at``."""

    def adv(self, symbols, at) -> np.ndarray:
        """Average daily dollar volume per symbol, shape (N,), over the 20
        sessions before the session containing ``at`` (no look-ahead)."""

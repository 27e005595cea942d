"""Market-data containers shared by every source, stage and the engine.

Shapes: T bars (rows, oldest first), N symbols (columns, in ``symbols`` order).
Times are UTC bar close times (see :mod:`foxlive_core.calendar`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from foxlive_core.errors import DataError

BAR_FIELDS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class BarPanel:
    """OHLCV bars of a universe over a window.

    Attributes
    ----------
    times : pandas.DatetimeIndex, shape (T,)
        UTC bar close times, strictly increasing.
    symbols : tuple of str, length N
    open, high, low, close : ndarray, shape (T, N), float64
        Prices in the quote currency; NaN where the bar is missing.
    volume : ndarray, shape (T, N), float64
        Shares traded in the bar; NaN where the bar is missing.

    The tidy form (:meth:`to_frame`) has one row per (time, symbol) with
    columns ``time, symbol, open, high, low, close, volume``.
    """

    times: pd.DatetimeIndex
    symbols: tuple[str, ...]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __post_init__(self) -> None:
        shape = (len(self.times), len(self.symbols))
        for name in BAR_FIELDS:
            arr = getattr(self, name)
            if arr.shape != shape:
                raise DataError(f"BarPanel.{name} has shape {arr.shape}, expected {shape} (times x symbols)")
        if self.times.tz is None or str(self.times.tz) != "UTC":
            raise DataError(f"BarPanel.times must be UTC, got tz={self.times.tz}")

    @property
    def shape(self) -> tuple[int, int]:
        return self.close.shape

    def field(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def select(self, symbols) -> "BarPanel":
        """The same window restricted to ``symbols`` (in that order); unknown symbols are a DataError."""
        index = {s: i for i, s in enumerate(self.symbols)}
        missing = [s for s in symbols if s not in index]
        if missing:
            raise DataError(f"unknown symbol(s) {missing[:10]}; the panel holds {len(self.symbols)} symbols")
        cols = np.array([index[s] for s in symbols], dtype=np.intp)
        return BarPanel(self.times, tuple(symbols), *(getattr(self, f)[:, cols] for f in BAR_FIELDS))

    def rows(self, rows: slice | np.ndarray) -> "BarPanel":
        """A sub-window by row position (a slice or an index array)."""
        return BarPanel(self.times[rows], self.symbols, *(getattr(self, f)[rows] for f in BAR_FIELDS))

    def to_frame(self) -> pd.DataFrame:
        T, N = self.shape
        frame = pd.DataFrame(
            {
                "time": np.repeat(self.times.to_numpy(), N),
                "symbol": np.tile(np.array(self.symbols, dtype=object), T),
                **{f: getattr(self, f).reshape(-1) for f in BAR_FIELDS},
            }
        )
        frame["time"] = pd.to_datetime(frame["time"], utc=True)
        return frame


@dataclass(frozen=True)
class QuoteSnapshot:
    """The latest top-of-book quote per symbol.

    bid, ask : ndarray (N,), prices; NaN when the symbol has no quote.
    bid_size, ask_size : ndarray (N,), displayed shares.
    time : ndarray (N,), datetime64[ns] in UTC (NaT when no quote).
    """

    symbols: tuple[str, ...]
    bid: np.ndarray
    ask: np.ndarray
    bid_size: np.ndarray
    ask_size: np.ndarray
    time: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.symbols)
        for name in ("bid", "ask", "bid_size", "ask_size", "time"):
            if getattr(self, name).shape != (n,):
                raise DataError(f"QuoteSnapshot.{name} has shape {getattr(self, name).shape}, expected ({n},)")

    @property
    def mid(self) -> np.ndarray:
        return 0.5 * (self.bid + self.ask)

    def select(self, symbols) -> "QuoteSnapshot":
        index = {s: i for i, s in enumerate(self.symbols)}
        missing = [s for s in symbols if s not in index]
        if missing:
            raise DataError(f"unknown symbol(s) {missing[:10]} in quote snapshot")
        cols = np.array([index[s] for s in symbols], dtype=np.intp)
        return QuoteSnapshot(tuple(symbols), self.bid[cols], self.ask[cols], self.bid_size[cols], self.ask_size[cols], self.time[cols])

"""Historical OHLCV bars read from a directory of CSV or Parquet files.

File format
-----------
The directory holds either

- one file per symbol, ``<SYMBOL>.csv`` or ``<SYMBOL>.parquet`` (the file
  name without its extension is the symbol), or
- one long file, any single ``.csv`` or ``.parquet`` in the directory, with an
  extra ``symbol`` column.

Columns (names case-insensitive, any order, extra columns ignored):

======== ===============================================================
time     bar **close** time with a timezone: ISO 8601 with an offset in
         CSV (``2025-01-02T14:35:00Z``, ``2025-01-02T09:35:00-05:00``),
         a timezone-aware timestamp column in Parquet
open     first trade price of the bar, > 0
high     highest price, >= open, close and low
low      lowest price, <= open, close and high
close    last trade price, > 0
volume   shares traded in the bar, >= 0
======== ===============================================================

Each time must be a bar close time of the configured calendar and bar
interval (a 5-minute XNYS bar covering 14:30-14:35 UTC is labelled 14:35),
rows of a symbol in increasing time, one row per time.

Validation and repair
---------------------
With ``market.historical.repair: false`` any problem is a DataError naming
the file, the 1-based data row (the first row under the CSV header is row
1), its timestamp and the problem. With ``repair: true`` the fixable
problems are repaired in this order, and a summary of every repair is kept
in :attr:`HistoricalMarket.repairs`:

1. rows out of time order: sorted (stably) by time;
2. duplicate timestamps: the last row of each time (in file order) is kept;
3. NaN, non-numeric or non-positive open/high/low/close: the row is dropped
   (that bar becomes missing);
4. high below low, open or close, or low above open or close: dropped;
5. negative or missing volume: dropped;
6. times that are not bar close times of the calendar: dropped.

Always errors: missing columns, timezone-naive or unparseable times, symbols
asked for that have no data, symbol names that are not tickers, a file whose
``symbol`` column disagrees with its name, two files for one symbol.

Bars are aligned to the calendar's bar times between the first and the last
time in the data; a bar absent for a symbol is a NaN row. Memory: five
float64 arrays of shape (bars, symbols), 40 bytes per (bar, symbol).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from foxlive_core.calendar import calendar_for
from foxlive_core.config import SYMBOL_PATTERN, MarketConfig, bars_per_session
from foxlive_core.data.simulated import (
    ADV_SESSIONS,
    check_served,
    latest_valid_rows,
    mean_session_dollar_volume,
    ns_of,
    resolve_columns,
)
from foxlive_core.data.types import BAR_FIELDS, BarPanel, QuoteSnapshot
from foxlive_core.errors import DataError

REQUIRED_COLUMNS = ("time",) + BAR_FIELDS
PRICE_COLUMNS = ("open", "high", "low", "close")
SUFFIXES = (".csv", ".parquet")
MAX_LISTED = 10  # problems or rows quoted in one message
_OFFSET_PATTERN = r"(?:Z|z|[+-]\d{2}(?::?\d{2})?)$"


def _rows_text(rows: np.ndarray) -> str:
    listed = ", ".join(str(int(r)) for r in rows[:MAX_LISTED])
    return listed + (f" and {len(rows) - MAX_LISTED} more" if len(rows) > MAX_LISTED else "")


def _read_table(path: Path) -> pd.DataFrame:
    """Raw table of one file: CSV cells as text, Parquet as stored; lower-case column names."""
    try:
        if path.suffix.lower() == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            frame = pd.read_parquet(path)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: cannot be read as {path.suffix.lower()[1:]}: {exc}") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    return frame


def _parse_times(column: pd.Series, label: str, rows: np.ndarray) -> pd.Series:
    """UTC times of a ``time`` column; naive or unparseable times are a DataError naming the rows."""
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return column.dt.tz_convert("UTC").dt.as_unit("ns")
    if pd.api.types.is_datetime64_dtype(column.dtype):
        raise DataError(
            f"{label} row 1: column 'time' is timezone-naive; store bar close times with a timezone "
            "(a tz-aware timestamp column, e.g. pandas .dt.tz_localize('UTC'))"
        )
    text = column.astype(str).str.strip()
    has_zone = text.str.contains(_OFFSET_PATTERN, regex=True).to_numpy(dtype=bool)
    if not has_zone.all():
        bad = np.flatnonzero(~has_zone)
        raise DataError(
            f"{label} row(s) {_rows_text(rows[bad])}: time {text.iloc[bad[0]]!r} has no timezone offset "
            "(or is not ISO 8601); write it as e.g. '2025-01-02T14:35:00Z' or '2025-01-02T09:35:00-05:00'"
        )
    times = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    unparsed = times.isna().to_numpy()
    if unparsed.any():
        bad = np.flatnonzero(unparsed)
        raise DataError(
            f"{label} row(s) {_rows_text(rows[bad])}: time {text.iloc[bad[0]]!r} is not an ISO 8601 "
            "timestamp; write it as e.g. '2025-01-02T14:35:00Z'"
        )
    return times.dt.as_unit("ns")


def _normalise(raw: pd.DataFrame, label: str, symbol: str | None) -> pd.DataFrame:
    """Typed frame with columns file, row, symbol, time (UTC), open..volume (float64)."""
    wanted = REQUIRED_COLUMNS + (("symbol",) if symbol is None else ())
    missing = [c for c in wanted if c not in raw.columns]
    if missing:
        raise DataError(
            f"{label}: missing column(s) {missing}; the columns found are {list(raw.columns)}; "
            f"every file needs {list(wanted)}"
        )
    rows = np.arange(1, len(raw) + 1)
    frame = pd.DataFrame({"file": label, "row": rows})
    if symbol is None:
        frame["symbol"] = raw["symbol"].astype(str).str.strip().to_numpy()
    else:
        if "symbol" in raw.columns:
            other = raw["symbol"].astype(str).str.strip().to_numpy() != symbol
            if other.any():
                bad = np.flatnonzero(other)
                raise DataError(
                    f"{label} row(s) {_rows_text(rows[bad])}: symbol {raw['symbol'].iloc[bad[0]]!r} differs from the "
                    f"file name's symbol {symbol!r}; one file per symbol holds only that symbol"
                )
        frame["symbol"] = symbol
    frame["time"] = _parse_times(raw["time"].reset_index(drop=True), label, rows)
    for name in BAR_FIELDS:
        frame[name] = pd.to_numeric(raw[name].reset_index(drop=True), errors="coerce").astype(np.float64)
    return frame


class HistoricalMarket:
    """OHLCV bars, derived quotes and ADV from files (format in the module docstring).

    Parameters
    ----------
    path : str or PathLike
        Directory of the files.
    market : MarketConfig
        Calendar, bar interval and ``market.historical`` (quote_spread_bps, repair).
    symbols : sequence of str, optional
        The universe to load (default: every symbol in the directory, sorted).

    Attributes
    ----------
    repairs : list of str
        One line per repair made (empty when nothing needed repair).
    """

    def __init__(self, path: str | os.PathLike, market: MarketConfig, symbols: Sequence[str] | None = None) -> None:
        self.calendar = calendar_for(market)
        self._market = market
        self._spread_bps = market.historical.quote_spread_bps
        self.repairs: list[str] = []
        root = Path(path).expanduser()
        if not root.is_dir():
            raise DataError(f"historical data directory {str(root)!r} does not exist; set market.historical.path")
        wanted = None if symbols is None else ((symbols,) if isinstance(symbols, str) else tuple(symbols))
        frame = self._load(root, wanted)
        frame = self._validate(frame, market.historical.repair)
        self._symbols = wanted if wanted is not None else tuple(sorted(frame["symbol"].unique()))
        self._align(frame)

    # ------------------------------------------------------------------ loading

    def _load(self, root: Path, wanted: tuple[str, ...] | None) -> pd.DataFrame:
        files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise DataError(f"{root}: no .csv or .parquet files; put one file per symbol or one long file there")
        tables: dict[Path, pd.DataFrame] = {}
        if len(files) == 1:
            tables[files[0]] = raw = _read_table(files[0])
            if "symbol" in raw.columns:
                return self._load_long(files[0], raw, wanted)
        by_symbol: dict[str, Path] = {}
        for p in files:
            if p.stem in by_symbol:
                raise DataError(f"{root}: both {by_symbol[p.stem].name} and {p.name} hold {p.stem!r}; keep one of them")
            by_symbol[p.stem] = p
        if wanted is None:
            bad = [p.name for s, p in by_symbol.items() if not SYMBOL_PATTERN.match(s)]
            if bad:
                raise DataError(
                    f"{root}: file(s) {bad[:MAX_LISTED]} are not named after a ticker (upper-case letters, digits, "
                    "'.' or '-'); rename or remove them, or pass the symbols to load"
                )
        else:
            unknown = [s for s in wanted if s not in by_symbol]
            if unknown:
                raise DataError(
                    f"{root}: no file for symbol(s) {unknown[:MAX_LISTED]} (looked for <SYMBOL>.csv / <SYMBOL>.parquet); "
                    "add the files or drop the symbols from the universe"
                )
        chosen = wanted if wanted is not None else tuple(sorted(by_symbol))
        frames = []
        for s in chosen:
            path = by_symbol[s]
            raw = tables[path] if path in tables else _read_table(path)
            frames.append(_normalise(raw, path.name, s))
        return pd.concat(frames, ignore_index=True)

    def _load_long(self, path: Path, raw: pd.DataFrame, wanted: tuple[str, ...] | None) -> pd.DataFrame:
        frame = _normalise(raw, path.name, None)
        valid = frame["symbol"].str.match(SYMBOL_PATTERN.pattern).to_numpy(dtype=bool)
        if not valid.all():
            bad = np.flatnonzero(~valid)
            raise DataError(
                f"{path.name} row(s) {_rows_text(frame['row'].to_numpy()[bad])}: symbol {frame['symbol'].iloc[bad[0]]!r} "
                "is not a ticker (upper-case letters, digits, '.' or '-'); fix the symbol column"
            )
        if wanted is None:
            return frame
        present = set(frame["symbol"].unique())
        unknown = [s for s in wanted if s not in present]
        if unknown:
            raise DataError(
                f"{path.name}: no rows for symbol(s) {unknown[:MAX_LISTED]}; the file holds {len(present)} symbols "
                f"(e.g. {sorted(present)[:5]}); add their rows or drop them from the universe"
            )
        return frame[frame["symbol"].isin(wanted)].reset_index(drop=True)

    # ------------------------------------------------------------------ validation

    def _validate(self, frame: pd.DataFrame, repair: bool) -> pd.DataFrame:
        """Check every rule; raise (strict) or repair and record (repair mode). See the module docstring."""
        if frame.empty:
            raise DataError("historical data holds no rows; add bars to the files")
        problems: list[str] = []

        def note(mask: np.ndarray, what: str, fixed: str) -> None:
            """Record rows flagged by ``mask`` of the current frame, per file."""
            if not mask.any():
                return
            hits = frame.loc[mask, ["file", "row", "time"]]
            for label, group in hits.groupby("file", sort=True):
                rows = group["row"].to_numpy()
                if repair:
                    self.repairs.append(f"{label}: {fixed} {len(rows)} row(s) with {what} (rows {_rows_text(rows)})")
                else:
                    for row, t in zip(rows[:MAX_LISTED], group["time"].iloc[:MAX_LISTED]):
                        problems.append(f"{label} row {row} ({t.isoformat()}): {what}")

        previous = frame.groupby("symbol", sort=False)["time"].shift()
        note((frame["time"] < previous).to_numpy(), "a time earlier than the row before it", "sorted")
        if repair:
            frame = frame.sort_values(["symbol", "time"], kind="stable").reset_index(drop=True)
            note(frame.duplicated(["symbol", "time"], keep="last").to_numpy(), "a duplicate time (kept the last)", "dropped")
            frame = frame[~frame.duplicated(["symbol", "time"], keep="last")].reset_index(drop=True)
        else:
            note(frame.duplicated(["symbol", "time"], keep="first").to_numpy(), "a time already given in an earlier row", "")

        prices = frame[list(PRICE_COLUMNS)].to_numpy()
        bad_price = ~(np.isfinite(prices) & (prices > 0)).all(axis=1)
        o, h, l, c = prices.T
        with np.errstate(invalid="ignore"):
            bad_range = ~bad_price & ((h < l) | (h < np.maximum(o, c)) | (l > np.minimum(o, c)))
            bad_volume = ~(frame["volume"].to_numpy() >= 0)
        bar_times = self.calendar.bar_times(frame["time"].min(), frame["time"].max())
        off_calendar = ~frame["time"].isin(bar_times).to_numpy()
        note(bad_price, "a NaN, non-numeric or non-positive price", "dropped")
        note(bad_range, "high below low/open/close or low above open/close", "dropped")
        note(bad_volume, "a negative or missing volume", "dropped")
        note(
            off_calendar,
            f"a time that is not a {self.calendar.code} {self._market.bar_interval} bar close time",
            "dropped",
        )
        if problems:
            raise DataError(
                f"historical data has {len(problems)} problem(s): " + "; ".join(problems[:MAX_LISTED])
                + ("; ..." if len(problems) > MAX_LISTED else "")
                + "; fix the files or set market.historical.repair: true to repair them"
            )
        frame = frame[~(bad_price | bad_range | bad_volume | off_calendar)].reset_index(drop=True)
        if frame.empty:
            raise DataError(
                "historical data holds no valid rows after repair; the repairs made: " + "; ".join(self.repairs)
            )
        return frame

    # ------------------------------------------------------------------ alignment

    def _align(self, frame: pd.DataFrame) -> None:
        """Dense (T, N) arrays on the calendar's bar times; per-session dollar volume (S, N)."""
        times = self.calendar.bar_times(frame["time"].min(), frame["time"].max())
        self._times = times
        self._times_ns = times.as_unit("ns").asi8
        n_bars, n_sym = len(times), len(self._symbols)
        rows = times.get_indexer(pd.DatetimeIndex(frame["time"]))
        cols = pd.Categorical(frame["symbol"], categories=list(self._symbols)).codes
        self._fields = {}
        for name in BAR_FIELDS:
            arr = np.full((n_bars, n_sym), np.nan)
            arr[rows, cols] = frame[name].to_numpy()
            self._fields[name] = arr

        sessions = self.calendar.sessions(times[0], times[-1])
        closes = pd.DatetimeIndex(sessions["close"]).as_unit("ns").asi8
        session_of_bar = np.searchsorted(closes, self._times_ns, side="left")
        used, starts = np.unique(session_of_bar, return_index=True)
        self._session_closes_ns = closes[used]
        observed = np.isfinite(self._fields["close"])
        dollars = np.where(observed, self._fields["close"] * self._fields["volume"], 0.0)
        totals = np.add.reduceat(dollars, starts, axis=0)
        any_bar = np.add.reduceat(observed.astype(np.int64), starts, axis=0) > 0
        self._session_dollars = np.where(any_bar, totals, np.nan)
        self._quote_lookback = 2 * bars_per_session(self._market)

    # ------------------------------------------------------------------ protocol

    @property
    def symbols(self) -> tuple[str, ...]:
        return self._symbols

    @property
    def first_time(self) -> pd.Timestamp:
        return self._times[0]

    @property
    def last_time(self) -> pd.Timestamp:
        return self._times[-1]

    def _check(self, lo_ns: int, hi_ns: int) -> None:
        check_served(self.calendar, lo_ns, hi_ns, int(self._times_ns[0]), int(self._times_ns[-1]), "historical data", "add data")

    def _panel(self, syms: tuple[str, ...], cols: np.ndarray, rows: slice) -> BarPanel:
        return BarPanel(self._times[rows], syms, *(self._fields[f][rows][:, cols] for f in BAR_FIELDS))

    def bars(self, symbols, start, end) -> BarPanel:
        """Bars with close time in [start, end] (both inclusive), shape (T, N); missing bars are NaN.

        ``symbols`` None means every symbol. A window holding a calendar bar
        before ``first_time`` or after ``last_time`` is a DataError.
        """
        syms, cols = resolve_columns(self._symbols, symbols)
        lo, hi = ns_of(start), ns_of(end)
        if hi < lo:
            raise DataError(f"bar window end {pd.Timestamp(hi, tz='UTC')} is before its start {pd.Timestamp(lo, tz='UTC')}")
        self._check(lo, hi)
        first = int(np.searchsorted(self._times_ns, lo, side="left"))
        stop = int(np.searchsorted(self._times_ns, hi, side="right"))
        return self._panel(syms, cols, slice(first, stop))

    def bars_ending_at(self, symbols, end, count: int) -> BarPanel:
        """The last ``count`` calendar bars with close time <= ``end``, shape (count, N)."""
        syms, cols = resolve_columns(self._symbols, symbols)
        if int(count) < 1:
            raise DataError(f"bars_ending_at: count={count} must be at least 1")
        end_ns = ns_of(end)
        self._check(end_ns, end_ns)
        stop = int(np.searchsorted(self._times_ns, end_ns, side="right"))
        if stop < count:
            raise DataError(
                f"bars_ending_at: only {stop} bars close between the data's first bar {self.first_time} and "
                f"{pd.Timestamp(end_ns, tz='UTC')}, {count} asked; ask for fewer bars or a later end"
            )
        return self._panel(syms, cols, slice(stop - int(count), stop))

    def quotes(self, symbols, at) -> QuoteSnapshot:
        """Quotes from each symbol's latest bar with close <= ``at``.

        mid = close; bid/ask = mid -/+ half of ``quote_spread_bps``; sizes =
        max(100, volume/10 rounded to hundreds); time = that bar's close time.
        A symbol without any bar up to ``at`` gets NaN prices, zero sizes, NaT.
        """
        syms, cols = resolve_columns(self._symbols, symbols)
        at_ns = ns_of(at)
        self._check(at_ns, at_ns)
        stop = int(np.searchsorted(self._times_ns, at_ns, side="right"))
        first = max(0, stop - self._quote_lookback)
        close = self._fields["close"][first:stop][:, cols]
        row, has = latest_valid_rows(np.isfinite(close))
        row = row + first
        stale = np.flatnonzero(~has)
        if stale.size and first > 0:
            # rare: nothing in the last two sessions, so search the whole history of those symbols
            older_row, older_has = latest_valid_rows(np.isfinite(self._fields["close"][:first][:, cols[stale]]))
            row[stale], has[stale] = older_row, older_has
        mid = np.where(has, self._fields["close"][row, cols], np.nan)
        volume = self._fields["volume"][row, cols]
        size = np.where(has, np.maximum(100.0, np.round(volume / 10.0, -2)), 0.0)
        half = 0.5e-4 * self._spread_bps * mid
        time = np.where(has, self._times_ns[row], np.iinfo(np.int64).min).astype("datetime64[ns]")
        return QuoteSnapshot(syms, mid - half, mid + half, size, size.copy(), time)

    def adv(self, symbols, at) -> np.ndarray:
        """Mean daily dollar volume (sum of close*volume per session), shape (N,).

        Averaged over the (up to) 20 sessions of the data that closed strictly
        before ``at``, ignoring sessions in which the symbol has no bar; NaN
        when there is no such session (at the start of the data).
        """
        _, cols = resolve_columns(self._symbols, symbols)
        at_ns = ns_of(at)
        self._check(at_ns, at_ns)
        done = int(np.searchsorted(self._session_closes_ns, at_ns, side="left"))
        recent = self._session_dollars[max(0, done - ADV_SESSIONS) : done][:, cols]
        return mean_session_dollar_volume(recent)

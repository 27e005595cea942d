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
time     bar time, see below
open     first trade price of the bar, > 0
high     highest price, >= open, close and low
low      lowest price, <= open, close and high
close    last trade price, > 0
volume   shares traded in the bar, >= 0
======== ===============================================================

The time column is ``market.historical.time_column`` when set, else the one
column named ``time``, ``timestamp``, ``date`` or ``datetime`` (any case) or a
timezone-aware Parquet index; with none of those, an unnamed first CSV column
(pandas' written index). Two candidates are an error. Its values are

- times with a timezone: ISO 8601 with an offset in CSV
  (``2025-01-02T14:35:00Z``, ``2025-01-02T09:35:00-05:00``), tz-aware
  timestamps in Parquet. They are bar **close** times, or with
  ``market.historical.time_is: open`` bar open times, moved to the close on
  loading (one bar interval later; for daily bars the close of the session
  opening then);
- times of day without an offset (``2017-04-19 09:00:00``, naive Parquet
  datetimes) in the zone ``market.historical.timezone`` names (``UTC``,
  ``America/New_York``); without that key they are an error. A wall-clock
  time that a daylight saving change repeats or skips is an error;
- with daily bars only (``market.bar_interval: 1d``), bare dates
  (``2024-07-03``, Parquet dates or naive midnights, or midnights in the
  exchange's zone with an offset as yfinance writes them,
  ``2024-07-03 00:00:00-04:00``): that session, stamped at its real close
  (2024-07-03 closes 17:00Z, a half day). A date that is no session is an
  off-calendar row.

Text times are ISO 8601, or with ``market.historical.time_format`` in that
strftime format (``%m/%d/%Y`` for ``1/4/1999``, ``%d.%m.%Y %H:%M:%S.%f``):
a format without an hour (``%H``, ``%I``) writes bare dates, one with ``%z``
times with an offset, any other times of day without one. Values the format
does not read are read as ISO 8601, so one directory may hold files from
vendors writing either.

Each time must then be a bar close time of the calendar and bar interval (a
5-minute XNYS bar covering 14:30-14:35 UTC is labelled 14:35). The calendar
reaches back to the first row, before exchange-calendars' default start.

Validation and repair
---------------------
Every row is checked against the rules of :data:`RULES`; a row breaking
several counts once, under the first. With ``market.historical.repair:
false`` any bad row is a DataError giving the count of bad rows per rule and
the first few with file, 1-based data row (the first row under the CSV header
is row 1), time and problem. With ``repair: true`` rows out of time order are
sorted (stably) by time, the other bad rows dropped (their bar becomes
missing), and among valid rows of one time the last in the file is kept.
Each repair is counted per symbol and rule in :attr:`HistoricalMarket.repairs`
and summarised by :meth:`HistoricalMarket.repair_summary`; a symbol losing
more than ``market.historical.max_repair_share`` of its rows is a DataError.
:meth:`HistoricalMarket.repaired` marks the bars that repairs touched.

Always errors: a missing or ambiguous time column, missing columns,
times of day without an offset and no ``market.historical.timezone``, times
the format does not read, bare dates with intraday bars,
symbols asked for that have no data, symbol names that are not tickers, a file
whose ``symbol`` column disagrees with its name, two files for one symbol.

Bars are aligned to the calendar's bar times between the first and the last
time in the data; a bar absent for a symbol is a NaN row. Memory: five
float64 arrays and one bool array of shape (bars, symbols), 41 bytes per
(bar, symbol).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from foxlive_core.calendar import TradingCalendar, calendar_for
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

PRICE_COLUMNS = ("open", "high", "low", "close")
TIME_NAMES = ("time", "timestamp", "date", "datetime")
SUFFIXES = (".csv", ".parquet")
MAX_LISTED = 10  # rows or names quoted in one message
STRICT_LISTED = 5  # bad rows quoted by strict mode, after the full count
_OFFSET_PATTERN = r"(?:Z|z|[+-]\d{2}(?::?\d{2})?)$"
_DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
_UNNAMED_FIRST = "unnamed: 0"  # pandas' name for a CSV's first column with an empty header

#: (rule, action, problem) in the order rows are assigned to rules; "sorted" keeps the row.
RULES = (
    ("NaN price", "dropped", "a missing, NaN or non-numeric price"),
    ("infinite value", "dropped", "an infinite price or volume"),
    ("non-positive price", "dropped", "a zero or negative price"),
    ("high below low", "dropped", "high below low"),
    ("high below open/close", "dropped", "high below open or close"),
    ("low above open/close", "dropped", "low above open or close"),
    ("negative volume", "dropped", "a negative volume"),
    ("missing volume", "dropped", "a missing, NaN or non-numeric volume"),
    ("off-calendar time", "dropped", "a time that is not a {calendar} {interval} bar close time"),
    ("time out of order", "sorted", "a time earlier than the row before it"),
    ("duplicate time", "dropped", "a time also given in another row of the symbol"),
)
_RULE = {name: k for k, (name, _, _) in enumerate(RULES)}
REPAIR_COLUMNS = ("symbol", "rule", "rows", "action")


def _rows_text(rows: np.ndarray) -> str:
    listed = ", ".join(str(int(r)) for r in rows[:MAX_LISTED])
    return listed + (f" and {len(rows) - MAX_LISTED} more" if len(rows) > MAX_LISTED else "")


def _read_table(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """Raw table of one file and its index columns.

    CSV cells as text, Parquet as stored with a non-trivial index turned into
    columns; column names lower-case. The index columns are the Parquet index
    levels with a datetime dtype, or pandas' unnamed first CSV column.
    """
    try:
        if path.suffix.lower() == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            frame = pd.read_parquet(path)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: cannot be read as {path.suffix.lower()[1:]}: {exc}") from None
    index_columns: list[str] = []
    if not isinstance(frame.index, pd.RangeIndex):
        levels = frame.index.to_frame(index=False)
        dated = [str(c) for c in levels.columns if pd.api.types.is_datetime64_any_dtype(levels[c].dtype)]
        frame = frame.reset_index()
        index_columns = [str(c).strip().lower() for c in dated]
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    if len(frame.columns) and frame.columns[0] == _UNNAMED_FIRST:
        index_columns = [_UNNAMED_FIRST]
    return frame, index_columns


def _time_column(raw: pd.DataFrame, index_columns: list[str], label: str, configured: str | None) -> str:
    """Name of the column holding the bar times (rules in the module docstring)."""
    found = list(raw.columns)
    if configured is not None:
        name = configured.strip().lower()
        if name not in raw.columns:
            raise DataError(
                f"{label}: market.historical.time_column is {configured!r} but the file has no such column; "
                f"the columns found are {found}; set the key to one of them, or to null to find it by name"
            )
        return name
    named = [c for c in raw.columns if c in TIME_NAMES]
    dated_index = [c for c in index_columns if c != _UNNAMED_FIRST and c not in named]
    candidates = named + dated_index
    if not candidates and index_columns == [_UNNAMED_FIRST]:
        candidates = [_UNNAMED_FIRST]
    if len(candidates) > 1:
        raise DataError(
            f"{label}: columns {candidates[0]!r} and {candidates[1]!r} could both be the bar time; "
            "set market.historical.time_column to the one that is"
        )
    if not candidates:
        raise DataError(
            f"{label}: no time column; looked for a column named {' / '.join(TIME_NAMES)} (any case), a datetime "
            f"Parquet index or an unnamed first CSV column; the columns found are {found}; "
            "name it with market.historical.time_column"
        )
    return candidates[0]


def _session_closes(calendar: TradingCalendar, dates: pd.Series, by: str) -> pd.Series:
    """UTC close of the session each value of ``dates`` names, NaT where it names none.

    ``by`` "date": values are tz-naive session dates; "open": UTC session open times.
    """
    valid = dates.dropna()
    if valid.empty:
        return pd.Series(pd.NaT, index=dates.index, dtype="datetime64[ns, UTC]")
    lo, hi = valid.min(), valid.max()
    if by == "date":
        lo, hi = lo.tz_localize("UTC"), hi.tz_localize("UTC")
    table = calendar.sessions(lo - pd.Timedelta(days=1), hi + pd.Timedelta(days=3))
    keys = pd.DatetimeIndex(table.index if by == "date" else table["open"]).as_unit("ns")
    closes = pd.DatetimeIndex(table["close"]).tz_convert("UTC").tz_localize(None).as_unit("ns").to_numpy()
    at = keys.get_indexer(pd.DatetimeIndex(dates).as_unit("ns"))
    found = at >= 0
    values = np.full(len(dates), np.datetime64("NaT", "ns"))
    values[found] = closes[at[found]]
    return pd.Series(pd.DatetimeIndex(values).tz_localize("UTC"), index=dates.index)


def _midnight_dates(calendar: TradingCalendar, times: pd.Series) -> pd.Series:
    """Naive session dates of the aware daily stamps at midnight in the calendar's zone; NaT elsewhere.

    Vendors write a daily bar as its date at the exchange's midnight (yfinance:
    ``2020-01-02 00:00:00-05:00``), which is no bar close: it names that
    session. A midnight that is itself a session's close (``24/7`` closes at
    00:00Z) stays a close.
    """
    wall = times.dt.tz_convert(calendar.tz)
    day = wall.dt.tz_localize(None).dt.normalize()
    at_midnight = times.notna() & (wall.dt.tz_localize(None) == day)
    candidates = day.where(at_midnight)
    closes_then = _session_closes(calendar, candidates - pd.Timedelta(days=1), "date")
    return candidates.where(~(closes_then == times).fillna(False)).dt.as_unit("ns")


def _localize(local: pd.Series, written: pd.Series, label: str, rows: np.ndarray, market: MarketConfig) -> pd.Series:
    """Times of day without an offset (``local`` naive, NaT elsewhere) read in ``market.historical.timezone``; UTC, ns.

    ``written`` is the column as the file wrote it, for messages.
    """
    given = np.flatnonzero(local.notna().to_numpy())
    zone = market.historical.timezone
    if zone is None:
        raise DataError(
            f"{label} row(s) {_rows_text(rows[given])}: time {written.iloc[given[0]]!r} has no timezone offset; "
            "set market.historical.timezone to the zone the file's times are in (e.g. UTC or America/New_York), "
            "or write them with an offset, e.g. '2025-01-02T14:35:00Z'"
        )
    placed = local.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
    lost = placed.isna().to_numpy() & local.notna().to_numpy()
    if lost.any():
        bad = np.flatnonzero(lost)
        raise DataError(
            f"{label} row(s) {_rows_text(rows[bad])}: time {written.iloc[bad[0]]!r} is repeated or skipped by a "
            f"daylight saving change in {zone}, so it names no single instant; store the times in UTC or with an offset"
        )
    return placed.dt.tz_convert("UTC").dt.as_unit("ns")


def _read_times(column: pd.Series, label: str, rows: np.ndarray, market: MarketConfig,
                daily: bool) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Split a time column into (aware UTC times, naive times of day, naive bare dates), NaT outside each kind.

    Unparseable values are DataErrors naming the rows and the setting to fix.
    """
    index = column.index
    nat_utc = pd.Series(pd.NaT, index=index, dtype="datetime64[ns, UTC]")
    nat = pd.Series(pd.NaT, index=index, dtype="datetime64[ns]")
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return column.dt.tz_convert("UTC").dt.as_unit("ns"), nat, nat
    if pd.api.types.is_datetime64_dtype(column.dtype) or pd.api.types.infer_dtype(column) == "date":
        naive = pd.to_datetime(column).dt.as_unit("ns")
        if daily:  # a naive midnight of a daily bar is its session's date
            midnight = (naive == naive.dt.normalize()).to_numpy()
            return nat_utc, naive.where(~midnight), naive.where(midnight)
        return nat_utc, naive, nat
    text = column.astype(str).str.strip()
    fmt = market.historical.time_format
    aware, local, dates = nat_utc, nat, nat
    if fmt is not None:
        zoned = "%z" in fmt
        parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=zoned).dt.as_unit("ns")
        if zoned:
            aware = parsed
        elif not any(d in fmt for d in ("%H", "%I")):  # a format without hours writes dates
            dates = parsed
        else:
            local = parsed
    rest = parsed.isna().to_numpy() if fmt is not None else np.ones(len(text), dtype=bool)
    bare = rest & text.str.match(_DATE_PATTERN).to_numpy(dtype=bool)
    has_zone = rest & text.str.contains(_OFFSET_PATTERN, regex=True).to_numpy(dtype=bool)
    unzoned = rest & ~bare & ~has_zone
    aware = aware.where(~has_zone, pd.to_datetime(text.where(has_zone), utc=True, format="ISO8601", errors="coerce"))
    local = local.where(~unzoned, pd.to_datetime(text.where(unzoned), format="ISO8601", errors="coerce"))
    dates = dates.where(~bare, pd.to_datetime(text.where(bare), format="%Y-%m-%d", errors="coerce"))
    unparsed = aware.isna().to_numpy() & local.isna().to_numpy() & dates.isna().to_numpy()
    if unparsed.any():
        bad = np.flatnonzero(unparsed)
        expected = (f"does not match market.historical.time_format {fmt!r} and is not ISO 8601; set the key to the "
                    "file's format (strftime directives)" if fmt is not None else
                    "is not an ISO 8601 timestamp ('2025-01-02T14:35:00Z') or date ('2024-07-03'); set "
                    "market.historical.time_format to the file's format, e.g. '%m/%d/%Y' or '%d.%m.%Y %H:%M:%S.%f'")
        raise DataError(f"{label} row(s) {_rows_text(rows[bad])}: time {text.iloc[bad[0]]!r} {expected}")
    return aware.dt.as_unit("ns"), local.dt.as_unit("ns"), dates.dt.as_unit("ns")


def _parse_times(column: pd.Series, label: str, rows: np.ndarray, market: MarketConfig,
                 calendar: TradingCalendar) -> pd.Series:
    """Bar close times (UTC, ns) of a time column; NaT where a date or open time names no session.

    Always-errors (unparseable times, times of day without an offset and no
    ``market.historical.timezone``, bare dates with intraday bars) are DataErrors naming the rows.
    """
    daily = calendar.interval_minutes is None
    times, local, dates = _read_times(column, label, rows, market, daily)
    if daily and times.notna().any():
        dates = dates.where(dates.notna(), _midnight_dates(calendar, times))
        times = times.where(dates.isna())
    bare = dates.notna().to_numpy()
    if bare.any() and not daily:
        bad = np.flatnonzero(bare)
        raise DataError(
            f"{label} row(s) {_rows_text(rows[bad])}: time {str(column.iloc[bad[0]])!r} is a date without a time of "
            f"day, which only daily bars (market.bar_interval: 1d) can use; give {market.bar_interval} bar times "
            "with a timezone, e.g. '2025-01-02T14:35:00Z'"
        )
    if local.notna().any():
        times = times.where(local.isna(), _localize(local, column.astype(str).str.strip(), label, rows, market))
    if market.historical.time_is == "open":
        if daily:
            times = _session_closes(calendar, times, "open")
        else:
            times = times + pd.Timedelta(minutes=calendar.interval_minutes)
    if bare.any():
        times = times.where(~bare, _session_closes(calendar, dates.where(bare), "date"))
    return times


def _normalise(raw: pd.DataFrame, index_columns: list[str], label: str, symbol: str | None,
               market: MarketConfig, calendar: TradingCalendar) -> pd.DataFrame:
    """Typed frame with columns file, row, given, symbol, time (UTC), open..volume (float64).

    ``given`` is the time as the file wrote it, for messages about rows whose time names no bar.
    """
    time_name = _time_column(raw, index_columns, label, market.historical.time_column)
    wanted = BAR_FIELDS + (("symbol",) if symbol is None else ())
    missing = [c for c in wanted if c not in raw.columns]
    if missing:
        raise DataError(
            f"{label}: missing column(s) {missing}; the columns found are {list(raw.columns)}; "
            f"every file needs a time column and {list(wanted)}"
        )
    rows = np.arange(1, len(raw) + 1)
    frame = pd.DataFrame({"file": label, "row": rows, "given": raw[time_name].astype(str).to_numpy()})
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
    frame["time"] = _parse_times(raw[time_name].reset_index(drop=True), label, rows, market, calendar)
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
        Calendar, bar interval and ``market.historical`` (quote_spread_bps,
        repair, time_column, time_is, max_repair_share, time_format, timezone).
    symbols : sequence of str, optional
        The universe to load (default: every symbol in the directory, sorted).
    """

    bars_threadsafe = True  # read-only arrays once loaded (see MarketData)

    def __init__(self, path: str | os.PathLike, market: MarketConfig, symbols: Sequence[str] | None = None) -> None:
        self.calendar = calendar_for(market)
        self._market = market
        self._spread_bps = market.historical.quote_spread_bps
        root = Path(path).expanduser()
        if not root.is_dir():
            raise DataError(f"historical data directory {str(root)!r} does not exist; set market.historical.path")
        wanted = None if symbols is None else ((symbols,) if isinstance(symbols, str) else tuple(symbols))
        frame = self._load(root, wanted)
        self._rows_read = len(frame)
        frame, touched = self._validate(frame, market.historical.repair)
        self._symbols = wanted if wanted is not None else tuple(sorted(frame["symbol"].unique()))
        self._align(frame, touched)

    # ------------------------------------------------------------------ loading

    def _table(self, path: Path, raw: pd.DataFrame, index_columns: list[str], symbol: str | None) -> pd.DataFrame:
        return _normalise(raw, index_columns, path.name, symbol, self._market, self.calendar)

    def _load(self, root: Path, wanted: tuple[str, ...] | None) -> pd.DataFrame:
        files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise DataError(f"{root}: no .csv or .parquet files; put one file per symbol or one long file there")
        tables: dict[Path, tuple[pd.DataFrame, list[str]]] = {}
        if len(files) == 1:
            tables[files[0]] = read = _read_table(files[0])
            if "symbol" in read[0].columns:
                return self._load_long(files[0], *read, wanted)
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
            read = tables[path] if path in tables else _read_table(path)
            frames.append(self._table(path, *read, s))
        return pd.concat(frames, ignore_index=True)

    def _load_long(self, path: Path, raw: pd.DataFrame, index_columns: list[str],
                   wanted: tuple[str, ...] | None) -> pd.DataFrame:
        frame = self._table(path, raw, index_columns, None)
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

    def _value_rules(self, frame: pd.DataFrame) -> np.ndarray:
        """Index into RULES of the first value or calendar rule each row breaks, -1 if none; shape (rows,)."""
        prices = frame[list(PRICE_COLUMNS)].to_numpy()
        volume = frame["volume"].to_numpy()
        o, h, l, c = prices.T
        times = frame["time"]
        on_time = times.notna().to_numpy()
        bar_times = (self.calendar.bar_times(times.min(), times.max()) if on_time.any()
                     else pd.DatetimeIndex([], tz="UTC"))
        with np.errstate(invalid="ignore"):
            broken = {
                "NaN price": np.isnan(prices).any(axis=1),
                "infinite value": np.isinf(prices).any(axis=1) | np.isinf(volume),
                "non-positive price": (prices <= 0).any(axis=1),
                "high below low": h < l,
                "high below open/close": h < np.maximum(o, c),
                "low above open/close": l > np.minimum(o, c),
                "negative volume": volume < 0,
                "missing volume": np.isnan(volume),
                "off-calendar time": ~(on_time & times.isin(bar_times).to_numpy()),
            }
        rule = np.full(len(frame), -1)
        for name, mask in broken.items():
            rule[(rule < 0) & mask] = _RULE[name]
        return rule

    def _problem(self, k: int) -> str:
        return RULES[k][2].format(calendar=self.calendar.code, interval=self._market.bar_interval)

    def _validate(self, frame: pd.DataFrame, repair: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Check every rule; raise (strict) or repair and count (repair mode). See the module docstring.

        Returns the valid rows and the (symbol, time) pairs of the bars that repairs touched.
        """
        if frame.empty:
            raise DataError("historical data holds no rows; add bars to the files")
        rule = self._value_rules(frame)
        previous = frame.groupby("symbol", sort=False)["time"].shift()
        unsorted = (frame["time"] < previous).to_numpy()
        if not repair:
            rule[(rule < 0) & unsorted] = _RULE["time out of order"]
            again = frame.duplicated(["symbol", "time"], keep="first").to_numpy() & frame["time"].notna().to_numpy()
            rule[(rule < 0) & again] = _RULE["duplicate time"]
            self._raise_strict(frame, rule)
            self._repairs = pd.DataFrame(columns=list(REPAIR_COLUMNS))
            return frame, frame.iloc[:0][["symbol", "time"]]

        frame = frame.assign(rule=rule, unsorted=unsorted)
        frame = frame.sort_values(["symbol", "time"], kind="stable").reset_index(drop=True)
        kept = frame["rule"].to_numpy() < 0
        again = frame[kept].duplicated(["symbol", "time"], keep="last")
        frame.loc[again.index[again.to_numpy()], "rule"] = _RULE["duplicate time"]
        rule = frame["rule"].to_numpy()
        moved = frame["unsorted"].to_numpy() & (rule < 0)  # a dropped row counts under its drop rule only
        counted = pd.concat([
            frame.loc[rule >= 0, ["file", "symbol"]].assign(rule=rule[rule >= 0]),
            frame.loc[moved, ["file", "symbol"]].assign(rule=_RULE["time out of order"]),
        ])
        self._repairs = self._repair_table(counted)
        self._check_repair_share(frame, rule)
        off = _RULE["off-calendar time"]
        touched = frame.loc[((rule >= 0) & (rule != off)) | moved, ["symbol", "time"]]
        valid = frame[rule < 0].drop(columns=["rule", "unsorted"]).reset_index(drop=True)
        if valid.empty:
            raise DataError(f"historical data holds no valid rows after repair; {self.repair_summary()}")
        return valid, touched

    def _raise_strict(self, frame: pd.DataFrame, rule: np.ndarray) -> None:
        bad = np.flatnonzero(rule >= 0)
        if not bad.size:
            return
        per_rule = pd.Series([RULES[k][0] for k in rule[bad]]).value_counts(sort=False)
        order = sorted(per_rule.index, key=_RULE.get)
        counts = ", ".join(f"{per_rule[r]:,} {r}" for r in order)
        listed = frame.iloc[bad].sort_values(["file", "row"], kind="stable").head(STRICT_LISTED)
        lines = []
        for row, k in zip(listed.itertuples(index=False), rule[listed.index.to_numpy()]):
            when = row.time.isoformat() if pd.notna(row.time) else row.given
            lines.append(f"{row.file} row {row.row} ({when}): {self._problem(int(k))}")
        more = f"; and {bad.size - len(lines):,} more" if bad.size > len(lines) else ""
        raise DataError(
            f"historical data has {bad.size:,} bad row(s) of {len(frame):,} ({counts}): " + "; ".join(lines) + more
            + "; fix the files or set market.historical.repair: true to repair them"
        )

    @staticmethod
    def _repair_table(counted: pd.DataFrame) -> pd.DataFrame:
        """Rows repaired per (symbol, rule), rules in RULES order; columns REPAIR_COLUMNS."""
        if counted.empty:
            return pd.DataFrame(columns=list(REPAIR_COLUMNS))
        table = counted.groupby(["symbol", "rule"], sort=True).size().rename("rows").reset_index()
        table["action"] = [RULES[k][1] for k in table["rule"]]
        table["rule"] = [RULES[k][0] for k in table["rule"]]
        return table[list(REPAIR_COLUMNS)].astype({"rows": np.int64})

    def _check_repair_share(self, frame: pd.DataFrame, rule: np.ndarray) -> None:
        """DataError when a symbol (in its file) would lose more than max_repair_share of its rows."""
        limit = self._market.historical.max_repair_share
        lost = frame.assign(dropped=rule >= 0).groupby(["file", "symbol"], sort=True)["dropped"].agg(["sum", "size"])
        share = lost["sum"] / lost["size"]
        over = share[share > limit]
        if over.empty:
            return
        file, symbol = over.index[0]
        mine = (frame["file"].to_numpy() == file) & (frame["symbol"].to_numpy() == symbol) & (rule >= 0)
        worst = pd.Series(rule[mine]).value_counts()
        dropped, total = int(lost.loc[(file, symbol), "sum"]), int(lost.loc[(file, symbol), "size"])
        others = f" ({len(over) - 1} more symbol(s) over the limit)" if len(over) > 1 else ""
        raise DataError(
            f"{file} ({symbol}): repair would drop {dropped:,} of {total:,} rows ({share.iloc[0]:.1%}), more than "
            f"market.historical.max_repair_share = {limit:g}{others}; most by {RULES[int(worst.index[0])][0]!r} "
            f"({int(worst.iloc[0]):,} rows: {self._problem(int(worst.index[0]))}); fix the file, or raise "
            "market.historical.max_repair_share to accept the loss"
        )

    @property
    def repairs(self) -> pd.DataFrame:
        """Rows repaired, one line per (symbol, rule): columns symbol, rule, rows, action ("dropped", "sorted").

        Empty (those columns, no rows) when nothing needed repair or with ``repair: false``.
        """
        return self._repairs.copy()

    def repair_summary(self) -> str:
        """One line on the repairs: rows dropped and sorted per rule, and per symbol."""
        table = self._repairs
        if table.empty:
            return f"no repairs: {self._rows_read:,} rows as given"
        parts = []
        for action in ("dropped", "sorted"):
            of = table[table["action"] == action]
            if not of.empty:
                by_rule = of.groupby("rule", sort=False)["rows"].sum()
                by_rule = by_rule.iloc[np.argsort([_RULE[r] for r in by_rule.index], kind="stable")]
                parts.append(f"{action} {int(of['rows'].sum()):,} (" + ", ".join(
                    f"{r} {int(n):,}" for r, n in by_rule.items()) + ")")
        by_symbol = table.groupby("symbol", sort=True)["rows"].sum()
        listed = ", ".join(f"{s} {int(n):,}" for s, n in by_symbol.iloc[:MAX_LISTED].items())
        more = f" and {len(by_symbol) - MAX_LISTED} more" if len(by_symbol) > MAX_LISTED else ""
        return (f"repaired rows of {len(by_symbol)} symbol(s) among {self._rows_read:,} rows read: "
                + "; ".join(parts) + f"; by symbol {listed}{more}")

    # ------------------------------------------------------------------ alignment

    def _align(self, frame: pd.DataFrame, touched: pd.DataFrame) -> None:
        """Dense (T, N) arrays on the calendar's bar times; the repaired mask (T, N); session dollar volume (S, N)."""
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
        # a touched bar outside the valid rows' span has no row of its own: nothing to mark there
        touched_rows = times.get_indexer(pd.DatetimeIndex(touched["time"]))
        touched_cols = pd.Categorical(touched["symbol"], categories=list(self._symbols)).codes
        inside = (touched_rows >= 0) & (touched_cols >= 0)
        self._repaired = np.zeros((n_bars, n_sym), dtype=bool)
        self._repaired[touched_rows[inside], touched_cols[inside]] = True

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
        return self._panel(syms, cols, self._window(start, end))

    def repaired(self, symbols, start, end) -> np.ndarray:
        """(T, N) bool over the rows and columns of ``bars(symbols, start, end)``: True where repair touched the bar.

        A bar is touched when a row of its symbol and time was dropped (its bar is then NaN) or
        sorted, or when a duplicate of it was dropped. Bars the files never had are False (and
        NaN in ``bars``); so are off-calendar rows, which belong to no bar.
        """
        _, cols = resolve_columns(self._symbols, symbols)
        return self._repaired[self._window(start, end)][:, cols]

    def _window(self, start, end) -> slice:
        """Rows of the bars closing in [start, end]; a DataError for a window the data cannot serve."""
        lo, hi = ns_of(start), ns_of(end)
        if hi < lo:
            raise DataError(f"bar window end {pd.Timestamp(hi, tz='UTC')} is before its start {pd.Timestamp(lo, tz='UTC')}")
        self._check(lo, hi)
        first = int(np.searchsorted(self._times_ns, lo, side="left"))
        stop = int(np.searchsorted(self._times_ns, hi, side="right"))
        return slice(first, stop)

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

"""HistoricalMarket: file layouts, alignment, quotes, ADV and every validation rule in both repair modes."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from foxlive_core.calendar import TradingCalendar
from foxlive_core.config import HistoricalConfig, MarketConfig, SimulatedConfig
from foxlive_core.data.historical import HistoricalMarket
from foxlive_core.data.protocol import MarketData
from foxlive_core.errors import DataError
from foxlive_core.features import fill_missing_bars

T = pd.Timestamp
UTC = "UTC"
CAL = TradingCalendar("XNYS", 5)
# three sessions: 2 Jan, 3 Jan, 6 Jan 2025 (78 bars each)
TIMES = CAL.bar_times(T("2025-01-02T14:30Z"), T("2025-01-06T21:00Z"))
SYMS = ("AAA", "BBB")


def make_market(repair: bool = True, calendar: str = "XNYS", bar_interval: str = "5m", **historical) -> MarketConfig:
    """A historical MarketConfig; ``historical`` overrides HistoricalConfig keys (time_column, time_is, ...)."""
    sim = SimulatedConfig(
        seed=7, start="2025-01-02", start_price_min=20.0, start_price_max=400.0, market_vol_bp=6.0,
        idio_vol_bp=10.0, vol_of_vol=0.15, vol_persistence=0.98, reversal_strength=0.08, drift_strength=0.25,
        base_spread_bps=2.0, spread_vol_mult=0.15, missing_bar_prob=0.001, adv_min_dollars=5e6, adv_max_dollars=5e8,
    )
    return MarketConfig(
        source="historical", calendar=calendar, bar_interval=bar_interval, max_fill_bars=3,
        historical=HistoricalConfig(path="unused", quote_spread_bps=2.0, repair=repair, **historical), simulated=sim,
    )


def expected(j: int) -> dict[str, np.ndarray]:
    """Known bars of symbol j: close rises 0.01 per bar, volume 10,000(j+1) + 37 i."""
    i = np.arange(len(TIMES), dtype=float)
    close = 100.0 + 10.0 * j + 0.01 * i
    return {"open": close - 0.005, "high": close + 0.02, "low": close - 0.025, "close": close,
            "volume": 10_000.0 * (j + 1) + 37.0 * i}


def frame_of(j: int, times=TIMES) -> pd.DataFrame:
    return pd.DataFrame({"time": [t.isoformat() for t in times], **expected(j)})


def write(tmp_path, frames: dict[str, pd.DataFrame], layout: str) -> None:
    """Write ``frames`` (per symbol) as per-symbol or long CSV/Parquet files."""
    fmt, shape = layout.split("_")
    if shape == "long":
        out = {"all": pd.concat([f.assign(symbol=s) for s, f in frames.items()], ignore_index=True)}
    else:
        out = frames
    for name, f in out.items():
        if fmt == "csv":
            f.to_csv(tmp_path / f"{name}.csv", index=False)
        else:
            f = f.copy()
            f["time"] = pd.to_datetime(f["time"], format="ISO8601", utc=True)
            f.to_parquet(tmp_path / f"{name}.parquet", index=False)


LAYOUTS = ("csv_persymbol", "parquet_persymbol", "csv_long", "parquet_long")


# ------------------------------------------------------------------ layouts and alignment


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_gives_the_same_bars(tmp_path, layout):
    write(tmp_path, {s: frame_of(j) for j, s in enumerate(SYMS)}, layout)
    market = HistoricalMarket(tmp_path, make_market(repair=False))
    assert isinstance(market, MarketData)
    assert market.symbols == SYMS
    assert market.first_time == T("2025-01-02 14:35", tz=UTC) and market.last_time == T("2025-01-06 21:00", tz=UTC)
    panel = market.bars(None, "2025-01-02T14:30Z", "2025-01-06T21:00Z")
    assert list(panel.times) == list(TIMES) and len(TIMES) == 3 * 78
    for j in range(2):
        for field, values in expected(j).items():
            np.testing.assert_array_equal(getattr(panel, field)[:, j], values)
    assert market.repairs.empty and list(market.repairs.columns) == ["symbol", "rule", "rows", "action"]
    assert market.repair_summary() == "no repairs: 468 rows as given"
    assert not market.repaired(None, TIMES[0], TIMES[-1]).any()


def test_offsets_other_than_utc_are_converted(tmp_path):
    f = frame_of(0)
    f["time"] = [t.tz_convert("America/New_York").isoformat() for t in TIMES]  # 09:35-05:00 ...
    assert f["time"].iloc[0] == "2025-01-02T09:35:00-05:00"
    write(tmp_path, {"AAA": f}, "csv_persymbol")
    panel = HistoricalMarket(tmp_path, make_market(repair=False)).bars(["AAA"], TIMES[0], TIMES[-1])
    assert list(panel.times) == list(TIMES)
    np.testing.assert_array_equal(panel.close[:, 0], expected(0)["close"])


def test_absent_bars_are_nan_rows_on_the_calendar(tmp_path):
    a = frame_of(0).drop(index=[10, 11, 12])
    b = frame_of(1).iloc[78:]  # BBB starts on the second session
    write(tmp_path, {"AAA": a, "BBB": b}, "csv_persymbol")
    market = HistoricalMarket(tmp_path, make_market(repair=False))
    panel = market.bars(None, TIMES[0], TIMES[-1])
    assert panel.shape == (234, 2)
    assert np.isnan(panel.close[10:13, 0]).all() and np.isfinite(panel.close[13:, 0]).all()
    assert np.isnan(panel.volume[:78, 1]).all()
    np.testing.assert_array_equal(panel.close[78:, 1], expected(1)["close"][78:])
    tail = market.bars_ending_at(["BBB", "AAA"], "2025-01-02T15:37Z", 4)
    assert list(tail.times) == list(TIMES[9:13]) and tail.symbols == ("BBB", "AAA")
    np.testing.assert_array_equal(tail.close[:, 1], [expected(0)["close"][9], np.nan, np.nan, np.nan])


def test_symbol_selection_and_unknown_symbols(tmp_path):
    write(tmp_path, {s: frame_of(j) for j, s in enumerate(SYMS)}, "csv_long")
    only_b = HistoricalMarket(tmp_path, make_market(), symbols=["BBB"])
    assert only_b.symbols == ("BBB",)
    with pytest.raises(DataError, match=r"no rows for symbol\(s\) \['ZZZ'\]"):
        HistoricalMarket(tmp_path, make_market(), symbols=["BBB", "ZZZ"])
    with pytest.raises(DataError, match=r"unknown symbol\(s\) \['AAA'\]"):
        only_b.bars(["AAA"], TIMES[0], TIMES[5])


def test_unknown_symbol_file_and_request_errors(tmp_path):
    write(tmp_path, {s: frame_of(j) for j, s in enumerate(SYMS)}, "csv_persymbol")
    with pytest.raises(DataError, match=r"no file for symbol\(s\) \['ZZZ'\]"):
        HistoricalMarket(tmp_path, make_market(), symbols=["ZZZ"])
    market = HistoricalMarket(tmp_path, make_market())
    with pytest.raises(DataError, match=r"unknown symbol\(s\) \['CCC'\]"):
        market.quotes(["AAA", "CCC"], TIMES[5])
    with pytest.raises(DataError, match="timezone-naive"):
        market.bars(["AAA"], "2025-01-02 15:00", TIMES[10])
    with pytest.raises(DataError, match=r"before the historical data's first bar 2025-01-02 14:35"):
        market.bars(["AAA"], "2024-12-31T15:00Z", TIMES[10])
    with pytest.raises(DataError, match=r"after the historical data's last bar 2025-01-06 21:00"):
        market.bars(["AAA"], TIMES[10], "2025-01-07T15:00Z")
    with pytest.raises(DataError, match=r"only 2 bars .* 3 asked"):
        market.bars_ending_at(["AAA"], TIMES[1], 3)


# ------------------------------------------------------------------ quotes and adv


def test_quotes_from_the_latest_bar(tmp_path):
    a = frame_of(0).drop(index=[100])  # AAA lacks the 100th bar
    write(tmp_path, {"AAA": a, "BBB": frame_of(1)}, "csv_persymbol")
    market = HistoricalMarket(tmp_path, make_market())
    q = market.quotes(None, TIMES[100] + pd.Timedelta(minutes=2))
    close_a, close_b = expected(0)["close"][99], expected(1)["close"][100]
    # 2 bps spread: bid/ask = close -/+ 1 bp
    np.testing.assert_allclose(q.bid, [close_a * (1 - 1e-4), close_b * (1 - 1e-4)], rtol=1e-12)
    np.testing.assert_allclose(q.ask, [close_a * (1 + 1e-4), close_b * (1 + 1e-4)], rtol=1e-12)
    # sizes max(100, round(volume / 10, -2)): AAA bar 99 volume 13,663 -> 1,400; BBB bar 100 23,700 -> 2,400
    np.testing.assert_array_equal(q.bid_size, [1400.0, 2400.0])
    np.testing.assert_array_equal(q.ask_size, [1400.0, 2400.0])
    assert list(q.time) == [TIMES[99].tz_localize(None).as_unit("ns").to_datetime64(),
                            TIMES[100].tz_localize(None).as_unit("ns").to_datetime64()]
    # small volume floors at one round lot; after the last close the last bar is still quoted
    tiny = frame_of(0).assign(volume=40.0)
    write(tmp_path, {"AAA": tiny}, "csv_persymbol")
    late = HistoricalMarket(tmp_path, make_market()).quotes(["AAA"], "2025-01-07T02:00Z")
    assert late.bid_size[0] == 100.0 and late.time[0] == np.datetime64("2025-01-06T21:00:00", "ns")


def test_adv_averages_complete_previous_sessions(tmp_path):
    b = frame_of(1).iloc[78:]  # BBB has no bar in the first session
    write(tmp_path, {"AAA": frame_of(0), "BBB": b}, "parquet_persymbol")
    market = HistoricalMarket(tmp_path, make_market())
    daily = [np.sum((expected(j)["close"] * expected(j)["volume"]).reshape(3, 78), axis=1) for j in range(2)]
    assert np.isnan(market.adv(None, "2025-01-02T18:00Z")).all()  # nothing before the first session
    # at the close of session 2 (6 Jan) that session is not complete: sessions 0 and 1
    np.testing.assert_allclose(market.adv(None, "2025-01-06T21:00Z"), [daily[0][:2].mean(), daily[1][1]], rtol=1e-12)
    np.testing.assert_allclose(market.adv(["AAA"], "2025-01-03T15:00Z"), [daily[0][0]], rtol=1e-12)


# ------------------------------------------------------------------ validation rules, both modes


def _swap(f):
    f = f.copy()
    f.iloc[[5, 6]] = f.iloc[[6, 5]].to_numpy()
    return f


def _duplicate(f):
    dup = f.iloc[[5]].assign(open=555.0, high=556.0, low=555.0, close=555.0)
    return pd.concat([f.iloc[:6], dup, f.iloc[6:]], ignore_index=True)


def _set(row, **values):
    def mutate(f):
        f = f.copy().astype({k: object for k in values})
        for k, v in values.items():
            f.loc[row, k] = v(f.loc[row]) if callable(v) else v
        return f

    return mutate


# (name, mutation of AAA's frame, strict error regex, repaired: (bar index, AAA close) or None,
#  (rule, action) counted for its one row, bar index marked by repaired() or None)
RULES = [
    ("unsorted", _swap, r"AAA\.csv row 7 \(2025-01-02T15:00:00\+00:00\): a time earlier than the row before it",
     None, ("time out of order", "sorted"), 5),
    ("duplicate", _duplicate, r"AAA\.csv row 7 \(2025-01-02T15:00:00\+00:00\): a time also given in another row",
     (5, 555.0), ("duplicate time", "dropped"), 5),
    ("nan price", _set(8, close=""), r"AAA\.csv row 9 \(2025-01-02T15:15:00\+00:00\): a missing, NaN or non-numeric price",
     (8, np.nan), ("NaN price", "dropped"), 8),
    ("infinite price", _set(8, high="inf"), r"AAA\.csv row 9 .*an infinite price or volume", (8, np.nan),
     ("infinite value", "dropped"), 8),
    ("zero price", _set(9, open=0.0), r"AAA\.csv row 10 .*a zero or negative price", (9, np.nan),
     ("non-positive price", "dropped"), 9),
    ("high below low", _set(10, high=lambda r: float(r["low"]) - 1.0), r"AAA\.csv row 11 .*: high below low;",
     (10, np.nan), ("high below low", "dropped"), 10),
    ("high below close", _set(11, high=lambda r: float(r["close"]) - 0.001), r"AAA\.csv row 12 .*high below open or close",
     (11, np.nan), ("high below open/close", "dropped"), 11),
    ("low above open", _set(12, low=lambda r: float(r["open"]) + 0.001), r"AAA\.csv row 13 .*low above open or close",
     (12, np.nan), ("low above open/close", "dropped"), 12),
    ("negative volume", _set(13, volume=-5.0), r"AAA\.csv row 14 \(2025-01-02T15:40:00\+00:00\): a negative volume",
     (13, np.nan), ("negative volume", "dropped"), 13),
    ("missing volume", _set(13, volume=""), r"AAA\.csv row 14 .*a missing, NaN or non-numeric volume",
     (13, np.nan), ("missing volume", "dropped"), 13),
    ("off calendar", _set(14, time="2025-01-02T15:46:00Z"),
     r"AAA\.csv row 15 \(2025-01-02T15:46:00\+00:00\): a time that is not a XNYS 5m bar close time",
     (14, np.nan), ("off-calendar time", "dropped"), None),  # the row names no bar, so no bar is marked
]


@pytest.mark.parametrize("name,mutate,strict_error,repaired,counted,marked", RULES, ids=[r[0] for r in RULES])
def test_rule_strict_mode_names_file_row_and_problem(tmp_path, name, mutate, strict_error, repaired, counted, marked):
    write(tmp_path, {"AAA": mutate(frame_of(0)), "BBB": frame_of(1)}, "csv_persymbol")
    with pytest.raises(DataError, match=r"has 1 bad row\(s\) of 46[89] \(1 " + re.escape(counted[0]) + r"\): "):
        HistoricalMarket(tmp_path, make_market(repair=False))
    with pytest.raises(DataError, match=strict_error):
        HistoricalMarket(tmp_path, make_market(repair=False))


@pytest.mark.parametrize("name,mutate,strict_error,repaired,counted,marked", RULES, ids=[r[0] for r in RULES])
def test_rule_repair_mode_fixes_counts_and_marks(tmp_path, name, mutate, strict_error, repaired, counted, marked):
    write(tmp_path, {"AAA": mutate(frame_of(0)), "BBB": frame_of(1)}, "csv_persymbol")
    market = HistoricalMarket(tmp_path, make_market(repair=True))
    rule, action = counted
    assert market.repairs.to_dict("records") == [{"symbol": "AAA", "rule": rule, "rows": 1, "action": action}]
    panel = market.bars(None, TIMES[0], TIMES[-1])
    assert list(panel.times) == list(TIMES)
    want = expected(0)["close"].copy()
    if repaired is not None:
        row, value = repaired
        want[row] = value
        if np.isnan(value):  # a dropped row is a missing bar: every field NaN
            assert np.isnan([getattr(panel, f)[row, 0] for f in ("open", "high", "low", "close", "volume")]).all()
    np.testing.assert_array_equal(panel.close[:, 0], want)
    np.testing.assert_array_equal(panel.close[:, 1], expected(1)["close"])
    mask = market.repaired(None, TIMES[0], TIMES[-1])
    assert mask.shape == panel.shape and mask.dtype == bool
    assert np.argwhere(mask).tolist() == ([] if marked is None else [[marked, 0]])


def test_strict_mode_lists_bad_rows_in_file_order(tmp_path):
    f = _set(13, volume=-5.0)(_set(8, close="")(frame_of(0)))
    write(tmp_path, {"AAA": f}, "csv_persymbol")
    with pytest.raises(DataError, match=r"2 bad row\(s\) of 234 \(1 NaN price, 1 negative volume\): AAA\.csv row 9 .*; "
                                        r"AAA\.csv row 14 .*repair: true"):
        HistoricalMarket(tmp_path, make_market(repair=False))


def test_long_file_rows_are_rows_of_that_file(tmp_path):
    frames = {s: frame_of(j) for j, s in enumerate(SYMS)}
    frames["BBB"] = _set(3, volume=-1.0)(frames["BBB"])
    write(tmp_path, frames, "csv_long")
    with pytest.raises(DataError, match=r"all\.csv row 238 \(2025-01-02T14:50:00\+00:00\): a negative"):
        HistoricalMarket(tmp_path, make_market(repair=False))  # BBB's rows follow AAA's 234
    market = HistoricalMarket(tmp_path, make_market(repair=True))
    assert market.repairs.to_dict("records") == [{"symbol": "BBB", "rule": "negative volume", "rows": 1, "action": "dropped"}]
    assert np.isnan(market.bars(["BBB"], TIMES[3], TIMES[3]).close[0, 0])


# ------------------------------------------------------------------ always errors


@pytest.mark.parametrize("repair", [False, True])
def test_naive_and_unparseable_times_are_always_errors(tmp_path, repair):
    write(tmp_path, {"AAA": _set(3, time="2025-01-02T14:50:00")(frame_of(0))}, "csv_persymbol")
    with pytest.raises(DataError, match=r"AAA\.csv row\(s\) 4: time '2025-01-02T14:50:00' has no timezone offset"):
        HistoricalMarket(tmp_path, make_market(repair=repair))
    write(tmp_path, {"AAA": _set(3, time="2025-13-45T99:00:00Z")(frame_of(0))}, "csv_persymbol")
    with pytest.raises(DataError, match=r"AAA\.csv row\(s\) 4: time '2025-13-45T99:00:00Z' is not an ISO 8601"):
        HistoricalMarket(tmp_path, make_market(repair=repair))


@pytest.mark.parametrize("repair", [False, True])
def test_naive_parquet_column_needs_a_timezone(tmp_path, repair):
    f = frame_of(0)
    f["time"] = pd.to_datetime(f["time"], format="ISO8601").dt.tz_convert("America/New_York").dt.tz_localize(None)
    f.to_parquet(tmp_path / "AAA.parquet", index=False)
    with pytest.raises(DataError, match=r"AAA\.parquet row\(s\) 1, 2, .*: time '2025-01-02 09:35:00' has no timezone "
                                        r"offset; set market\.historical\.timezone"):
        HistoricalMarket(tmp_path, make_market(repair=repair))
    market = HistoricalMarket(tmp_path, make_market(repair=repair, timezone="America/New_York"))
    assert market.first_time == TIMES[0] and market.last_time == TIMES[-1]  # 09:35 New York is 14:35Z in January
    np.testing.assert_array_equal(market.bars(None, TIMES[0], TIMES[-1]).close[:, 0], expected(0)["close"])


@pytest.mark.parametrize("repair", [False, True])
def test_missing_columns_are_always_an_error(tmp_path, repair):
    write(tmp_path, {"AAA": frame_of(0).drop(columns=["volume"]), "BBB": frame_of(1)}, "csv_persymbol")
    with pytest.raises(DataError, match=r"AAA\.csv: missing column\(s\) \['volume'\]"):
        HistoricalMarket(tmp_path, make_market(repair=repair))
    (tmp_path / "AAA.csv").unlink()
    (tmp_path / "BBB.csv").unlink()
    write(tmp_path, {"AAA": frame_of(0)}, "parquet_persymbol")  # one file without a symbol column: per-symbol
    assert HistoricalMarket(tmp_path, make_market(repair=repair)).symbols == ("AAA",)


def test_directory_level_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        HistoricalMarket(tmp_path / "nowhere", make_market())
    with pytest.raises(DataError, match="no .csv or .parquet files"):
        HistoricalMarket(tmp_path, make_market())
    write(tmp_path, {"AAA": frame_of(0)}, "csv_persymbol")
    write(tmp_path, {"AAA": frame_of(0)}, "parquet_persymbol")
    with pytest.raises(DataError, match="both AAA.csv and AAA.parquet hold 'AAA'"):
        HistoricalMarket(tmp_path, make_market())
    (tmp_path / "AAA.parquet").unlink()
    frame_of(1).to_csv(tmp_path / "notes.csv", index=False)
    with pytest.raises(DataError, match=r"file\(s\) \['notes.csv'\] are not named after a ticker"):
        HistoricalMarket(tmp_path, make_market())
    assert HistoricalMarket(tmp_path, make_market(), symbols=["AAA"]).symbols == ("AAA",)


def test_symbol_columns_must_hold_tickers(tmp_path):
    frame_of(0).assign(symbol="BBB").to_csv(tmp_path / "AAA.csv", index=False)
    frame_of(1).to_csv(tmp_path / "BBB.csv", index=False)
    with pytest.raises(DataError, match=r"AAA\.csv row\(s\) 1, 2, .*: symbol 'BBB' differs from the file name's symbol 'AAA'"):
        HistoricalMarket(tmp_path, make_market())
    long = tmp_path / "long"
    long.mkdir()
    frame_of(0).assign(symbol=["AAA"] * 233 + ["bad sym"]).to_csv(long / "bars.csv", index=False)
    with pytest.raises(DataError, match=r"bars\.csv row\(s\) 234: symbol 'bad sym' is not a ticker"):
        HistoricalMarket(long, make_market())


# ------------------------------------------------------------------ time columns, time_is, bare dates


def test_a_timestamp_column_in_any_case_is_the_time(tmp_path):
    frame_of(0).rename(columns={"time": "Timestamp"}).to_csv(tmp_path / "AAA.csv", index=False)
    panel = HistoricalMarket(tmp_path, make_market(repair=False)).bars(None, TIMES[0], TIMES[-1])
    assert list(panel.times) == list(TIMES)
    np.testing.assert_array_equal(panel.close[:, 0], expected(0)["close"])


def test_parquet_time_in_the_index(tmp_path):
    f = frame_of(0)
    f.index = pd.DatetimeIndex(pd.to_datetime(f.pop("time"), format="ISO8601", utc=True))  # unnamed tz-aware index
    f.to_parquet(tmp_path / "AAA.parquet")
    panel = HistoricalMarket(tmp_path, make_market(repair=False)).bars(None, TIMES[0], TIMES[-1])
    assert list(panel.times) == list(TIMES)
    np.testing.assert_array_equal(panel.volume[:, 0], expected(0)["volume"])


def test_unnamed_first_csv_column_is_the_time_only_without_a_named_one(tmp_path):
    f = frame_of(0)
    f.set_index("time").rename_axis(None).to_csv(tmp_path / "AAA.csv")  # header ",open,high,..."
    assert (tmp_path / "AAA.csv").read_text().startswith(",open,")
    assert list(HistoricalMarket(tmp_path, make_market(repair=False)).bars(None, TIMES[0], TIMES[-1]).times) == list(TIMES)
    f.to_csv(tmp_path / "AAA.csv")  # pandas' written row numbers 0, 1, ... before a named 'time' column
    assert list(HistoricalMarket(tmp_path, make_market(repair=False)).bars(None, TIMES[0], TIMES[-1]).times) == list(TIMES)


def test_two_time_columns_are_an_error_until_one_is_named(tmp_path):
    f = frame_of(0)
    f.insert(0, "Date", [t.date().isoformat() for t in TIMES])
    f.to_csv(tmp_path / "AAA.csv", index=False)
    with pytest.raises(DataError, match=r"AAA\.csv: columns 'date' and 'time' could both be the bar time; "
                                        r"set market\.historical\.time_column"):
        HistoricalMarket(tmp_path, make_market())
    panel = HistoricalMarket(tmp_path, make_market(time_column="TIME")).bars(None, TIMES[0], TIMES[-1])
    np.testing.assert_array_equal(panel.close[:, 0], expected(0)["close"])
    with pytest.raises(DataError, match=r"time_column is 'stamp' but the file has no such column"):
        HistoricalMarket(tmp_path, make_market(time_column="stamp"))


def test_time_is_open_moves_hourly_bars_one_hour_later(tmp_path):
    # Wednesday 8 Jan 2025's FX day, 17:00 to 17:00 New York: 24 bar opens from Tuesday 22:00Z
    opens = pd.date_range("2025-01-07T22:00Z", "2025-01-08T21:00Z", freq="h")
    close = 1.03 + 0.0001 * np.arange(24)
    pd.DataFrame({"time": [t.isoformat() for t in opens], "open": close, "high": close, "low": close,
                  "close": close, "volume": 1.0}).to_csv(tmp_path / "EURUSD.csv", index=False)
    as_closes = HistoricalMarket(tmp_path, make_market(repair=False, calendar="24/5", bar_interval="60m"))
    assert as_closes.first_time == T("2025-01-07T22:00Z") and as_closes.last_time == T("2025-01-08T21:00Z")
    market = HistoricalMarket(tmp_path, make_market(repair=False, calendar="24/5", bar_interval="60m", time_is="open"))
    assert market.first_time == T("2025-01-07T23:00Z") and market.last_time == T("2025-01-08T22:00Z")
    panel = market.bars(None, market.first_time, market.last_time)
    assert len(panel.times) == 24
    np.testing.assert_array_equal(panel.close[:, 0], close)


def daily_rows(dates) -> pd.DataFrame:
    close = 50.0 + np.arange(len(dates), dtype=float)
    return pd.DataFrame({"Date": list(dates), "Open": close, "High": close + 1, "Low": close - 1, "Close": close,
                         "Volume": 1e6})


def test_bare_dates_are_stamped_at_each_session_close(tmp_path):
    # Fri 8 Mar 2024 EST: 16:00 = 21:00Z; Mon 11 Mar after the DST change: 20:00Z; Wed 3 Jul, a half day: 13:00
    # EDT = 17:00Z; Fri 5 Jul: 20:00Z
    dates = ["2024-03-08", "2024-03-11", "2024-07-03", "2024-07-05"]
    daily_rows(dates).to_csv(tmp_path / "SPY.csv", index=False)
    market = HistoricalMarket(tmp_path, make_market(repair=False, bar_interval="1d"))
    panel = market.bars(None, market.first_time, market.last_time)
    got = panel.times[np.isfinite(panel.close[:, 0])]
    assert list(got) == [T("2024-03-08T21:00Z"), T("2024-03-11T20:00Z"), T("2024-07-03T17:00Z"), T("2024-07-05T20:00Z")]
    np.testing.assert_array_equal(panel.close[np.isfinite(panel.close[:, 0]), 0], [50.0, 51.0, 52.0, 53.0])
    # the same dates as Parquet dates and as naive midnights
    for column in (pd.to_datetime(dates).date, pd.to_datetime(dates)):
        (tmp_path / "SPY.csv").unlink(missing_ok=True)
        daily_rows(column).to_parquet(tmp_path / "SPY.parquet", index=False)
        again = HistoricalMarket(tmp_path, make_market(repair=False, bar_interval="1d"))
        assert list(again.bars(None, again.first_time, again.last_time).times) == list(panel.times)
    # midnights in New York with their offsets, as yfinance writes daily bars, in CSV and as aware Parquet times
    (tmp_path / "SPY.parquet").unlink()
    written = ["2024-03-08 00:00:00-05:00", "2024-03-11 00:00:00-04:00", "2024-07-03 00:00:00-04:00",
               "2024-07-05 00:00:00-04:00"]
    for column in (written, pd.to_datetime(dates).tz_localize("America/New_York")):
        for f in tmp_path.iterdir():
            f.unlink()
        rows = daily_rows(column)
        rows.to_csv(tmp_path / "SPY.csv", index=False) if isinstance(column, list) else rows.to_parquet(tmp_path / "SPY.parquet")
        again = HistoricalMarket(tmp_path, make_market(repair=False, bar_interval="1d"))
        assert list(again.bars(None, again.first_time, again.last_time).times) == list(panel.times)


def test_a_midnight_that_closes_a_session_stays_a_close(tmp_path):
    # 24/7 sessions run 00:00Z to 24:00Z: 2024-07-04T00:00Z is the close of the 3 July session, not a date of 4 July
    daily_rows(["2024-07-03T00:00:00Z", "2024-07-04T00:00:00Z"]).to_csv(tmp_path / "BTC.csv", index=False)
    market = HistoricalMarket(tmp_path, make_market(repair=False, calendar="24/7", bar_interval="1d"))
    assert list(market.bars(None, market.first_time, market.last_time).times) == [T("2024-07-03T00:00Z"),
                                                                                   T("2024-07-04T00:00Z")]


def test_bare_dates_that_are_no_session_and_bare_dates_with_intraday_bars(tmp_path):
    daily_rows(["2024-07-03", "2024-07-04", "2024-07-05"]).to_csv(tmp_path / "SPY.csv", index=False)  # 4 July: closed
    with pytest.raises(DataError, match=r"1 bad row\(s\) of 3 \(1 off-calendar time\): SPY\.csv row 2 \(2024-07-04\)"):
        HistoricalMarket(tmp_path, make_market(repair=False, bar_interval="1d", max_repair_share=1.0))
    market = HistoricalMarket(tmp_path, make_market(bar_interval="1d", max_repair_share=1.0))
    assert market.repairs.to_dict("records") == [{"symbol": "SPY", "rule": "off-calendar time", "rows": 1, "action": "dropped"}]
    with pytest.raises(DataError, match=r"SPY\.csv row\(s\) 1, 2, 3: time '2024-07-03' is a date without a time of day, "
                                        r"which only daily bars \(market\.bar_interval: 1d\) can use"):
        HistoricalMarket(tmp_path, make_market())


def test_time_format_reads_us_dates_and_dotted_day_first_times(tmp_path):
    # month/day/year dates as Yahoo exports write them: the same four sessions as the ISO dates above
    daily_rows(["3/8/2024", "3/11/2024", "7/3/2024", "7/5/2024"]).to_csv(tmp_path / "SPX.csv", index=False)
    with pytest.raises(DataError, match=r"SPX\.csv row\(s\) 1, 2, 3, 4: time '3/8/2024' is not an ISO 8601 timestamp "
                                        r".*set market\.historical\.time_format"):
        HistoricalMarket(tmp_path, make_market(repair=False, bar_interval="1d"))
    market = HistoricalMarket(tmp_path, make_market(repair=False, bar_interval="1d", time_format="%m/%d/%Y"))
    panel = market.bars(None, market.first_time, market.last_time)
    assert list(panel.times[np.isfinite(panel.close[:, 0])]) == [
        T("2024-03-08T21:00Z"), T("2024-03-11T20:00Z"), T("2024-07-03T17:00Z"), T("2024-07-05T20:00Z")]
    with pytest.raises(DataError, match=r"SPX\.csv row\(s\) 1, 2, 3, 4: time '3/8/2024' does not match "
                                        r"market\.historical\.time_format '%d\.%m\.%Y' and is not ISO 8601"):
        HistoricalMarket(tmp_path, make_market(repair=False, bar_interval="1d", time_format="%d.%m.%Y"))
    # a second vendor's file in the same directory writing ISO dates is read as ISO 8601
    daily_rows(["2024-03-08", "2024-07-05"]).to_csv(tmp_path / "GOOG.csv", index=False)
    both = HistoricalMarket(tmp_path, make_market(repair=False, bar_interval="1d", time_format="%m/%d/%Y"))
    assert both.symbols == ("GOOG", "SPX")
    np.testing.assert_array_equal(both.bars(None, T("2024-03-08T21:00Z"), T("2024-07-05T20:00Z")).close[[0, -1]],
                                  [[50.0, 50.0], [51.0, 53.0]])
    (tmp_path / "GOOG.csv").unlink()
    (tmp_path / "SPX.csv").unlink()
    # day.month.year times of hourly bar opens without an offset, in UTC: Friday 3 Jan 2025's FX day from 22:00Z
    opens = pd.date_range("2025-01-02T22:00Z", "2025-01-03T21:00Z", freq="h")
    close = 1.03 + 0.0001 * np.arange(24)
    pd.DataFrame({"Time": opens.strftime("%d.%m.%Y %H:%M:%S.000"), "Open": close, "High": close, "Low": close,
                  "Close": close, "Volume": 1.0}).to_csv(tmp_path / "EURUSD.csv", index=False)
    fx = dict(repair=False, calendar="24/5", bar_interval="60m", time_is="open", time_format="%d.%m.%Y %H:%M:%S.%f")
    with pytest.raises(DataError, match=r"EURUSD\.csv row\(s\) 1, 2, .*: time '02\.01\.2025 22:00:00\.000' has no "
                                        r"timezone offset; set market\.historical\.timezone"):
        HistoricalMarket(tmp_path, make_market(**fx))
    market = HistoricalMarket(tmp_path, make_market(**fx, timezone="UTC"))
    assert market.first_time == T("2025-01-02T23:00Z") and market.last_time == T("2025-01-03T22:00Z")
    np.testing.assert_array_equal(market.bars(None, market.first_time, market.last_time).close[:, 0], close)


def test_naive_times_in_a_zone_with_daylight_saving(tmp_path):
    # hourly bar closes written in New York wall-clock time around the fall-back night of Sunday 2 Nov 2025,
    # Monday's FX day; 01:00 happens twice that night, so it names no single instant
    local = ["2025-11-01 22:00", "2025-11-02 19:00", "2025-11-02 20:00", "2025-11-03 07:00"]
    close = [1.1, 1.2, 1.3, 1.4]
    rows = pd.DataFrame({"time": local, "open": close, "high": close, "low": close, "close": close, "volume": 1.0})
    rows.iloc[1:].to_csv(tmp_path / "EURUSD.csv", index=False)
    fx = dict(repair=False, calendar="24/5", bar_interval="60m", timezone="America/New_York")
    market = HistoricalMarket(tmp_path, make_market(**fx))
    panel = market.bars(None, market.first_time, market.last_time)
    # Sunday 19:00 EST = Monday 00:00Z; Monday 07:00 EST = 12:00Z
    assert panel.times[0] == T("2025-11-03T00:00Z") and panel.times[-1] == T("2025-11-03T12:00Z")
    np.testing.assert_array_equal(panel.close[[0, 1, -1], 0], [1.2, 1.3, 1.4])
    rows.assign(time=["2025-11-02 01:00"] + local[1:]).to_csv(tmp_path / "EURUSD.csv", index=False)
    with pytest.raises(DataError, match=r"EURUSD\.csv row\(s\) 1: time '2025-11-02 01:00' is repeated or skipped by "
                                        r"a daylight saving change in America/New_York"):
        HistoricalMarket(tmp_path, make_market(**fx))


def test_a_1995_daily_file_loads_on_xnys(tmp_path):
    # January 1995: 22 weekdays less 2 Jan (New Year observed) = 21 sessions, closing 16:00 EST = 21:00Z
    days = pd.bdate_range("1995-01-01", "1995-01-31")
    dates = [d.date().isoformat() for d in days if d != pd.Timestamp("1995-01-02")]
    assert len(dates) == 21
    daily_rows(dates).to_csv(tmp_path / "IBM.csv", index=False)
    market = HistoricalMarket(tmp_path, make_market(repair=False, bar_interval="1d"))
    assert market.first_time == T("1995-01-03T21:00Z") and market.last_time == T("1995-01-31T21:00Z")
    panel = market.bars(None, market.first_time, market.last_time)
    assert len(panel.times) == 21 and np.isfinite(panel.close).all()
    # the same closes written as times: true closes, never blamed as off-calendar rows
    stamped = daily_rows([f"{d}T21:00:00Z" for d in dates]).rename(columns={"Date": "time"})
    stamped.to_csv(tmp_path / "IBM.csv", index=False)
    assert list(HistoricalMarket(tmp_path, make_market(repair=False, bar_interval="1d")).bars(
        None, market.first_time, market.last_time).times) == list(panel.times)


# ------------------------------------------------------------------ repair counts, share limit, strict count


def _defects(frame: pd.DataFrame, nan_close=(), negative_volume=(), off_calendar=()) -> pd.DataFrame:
    f = frame.copy().astype({"close": object})
    f.loc[list(nan_close), "close"] = ""
    f.loc[list(negative_volume), "volume"] = -1.0
    f.loc[list(off_calendar), "time"] = [(T(t) + pd.Timedelta(minutes=1)).isoformat() for t in f.loc[list(off_calendar), "time"]]
    return f


def test_repair_table_counts_rows_per_rule_and_symbol_and_marks_their_bars(tmp_path):
    a = _duplicate(_defects(frame_of(0), nan_close=(20, 21, 22), negative_volume=(40, 41)))  # dup of bar 5 at row 7
    b = _swap(_defects(frame_of(1), off_calendar=(100, 101, 102, 103)))  # rows 6/7 swapped: 1 row out of order
    b.iloc[[50, 51]] = b.iloc[[51, 50]].to_numpy()  # and a second swap: row 52 out of order
    b.iloc[[150, 151]] = b.iloc[[151, 150]].to_numpy()  # row 152 is out of order and has a NaN close: counted once
    b = _defects(b, nan_close=(151,))
    write(tmp_path, {"AAA": a, "BBB": b}, "csv_persymbol")
    market = HistoricalMarket(tmp_path, make_market())
    assert market.repairs.to_dict("records") == [
        {"symbol": "AAA", "rule": "NaN price", "rows": 3, "action": "dropped"},
        {"symbol": "AAA", "rule": "negative volume", "rows": 2, "action": "dropped"},
        {"symbol": "AAA", "rule": "duplicate time", "rows": 1, "action": "dropped"},
        {"symbol": "BBB", "rule": "NaN price", "rows": 1, "action": "dropped"},
        {"symbol": "BBB", "rule": "off-calendar time", "rows": 4, "action": "dropped"},
        {"symbol": "BBB", "rule": "time out of order", "rows": 2, "action": "sorted"},
    ]
    assert market.repair_summary() == (
        "repaired rows of 2 symbol(s) among 469 rows read: dropped 11 (NaN price 4, negative volume 2, "
        "off-calendar time 4, duplicate time 1); sorted 2 (time out of order 2); by symbol AAA 6, BBB 7")
    # marked: AAA's bars 20-22 and 40-41 (dropped) and 5 (its duplicate dropped); BBB's out-of-order rows, bars 5
    # and 50, and 150 (dropped); BBB's off-calendar rows belong to no bar, so its bars 100-103 are absent, not marked
    mask = market.repaired(None, TIMES[0], TIMES[-1])
    assert np.flatnonzero(mask[:, 0]).tolist() == [5, 20, 21, 22, 40, 41]
    assert np.flatnonzero(mask[:, 1]).tolist() == [5, 50, 150]
    assert market.repaired(["BBB"], TIMES[50], TIMES[50]).tolist() == [[True]]
    panel = market.bars(None, TIMES[0], TIMES[-1])
    assert np.isnan(panel.close[[20, 21, 22, 40, 41], 0]).all() and np.isnan(panel.close[100:104, 1]).all()
    assert np.isfinite(panel.close[:, 0]).sum() == 234 - 5 and np.isfinite(panel.close[:, 1]).sum() == 234 - 5


def test_losing_more_than_max_repair_share_is_an_error(tmp_path):
    write(tmp_path, {"AAA": _defects(frame_of(0), nan_close=range(11)), "BBB": frame_of(1)}, "csv_persymbol")
    assert HistoricalMarket(tmp_path, make_market()).repairs["rows"].tolist() == [11]  # 11 / 234 = 4.7% <= 5%
    f = _defects(frame_of(0), nan_close=range(10), off_calendar=(30, 31))  # 12 / 234 = 5.1%
    write(tmp_path, {"AAA": f, "BBB": frame_of(1)}, "csv_persymbol")
    with pytest.raises(DataError, match=r"AAA\.csv \(AAA\): repair would drop 12 of 234 rows \(5\.1%\), more than "
                                        r"market\.historical\.max_repair_share = 0\.05; most by 'NaN price' \(10 rows: "
                                        r".*\); fix the file, or raise market\.historical\.max_repair_share"):
        HistoricalMarket(tmp_path, make_market())
    assert HistoricalMarket(tmp_path, make_market(max_repair_share=0.06)).repairs["rows"].tolist() == [10, 2]


def test_strict_mode_counts_every_bad_row_and_lists_a_few(tmp_path):
    f = _defects(frame_of(0), negative_volume=range(30), nan_close=range(100, 107))  # 30 + 7 = 37 bad rows
    write(tmp_path, {"AAA": f, "BBB": frame_of(1)}, "csv_persymbol")
    with pytest.raises(DataError) as info:
        HistoricalMarket(tmp_path, make_market(repair=False))
    text = str(info.value)
    assert text.startswith("historical data has 37 bad row(s) of 468 (7 NaN price, 30 negative volume): ")
    assert re.findall(r"AAA\.csv row (\d+) ", text) == ["1", "2", "3", "4", "5"] and "; and 32 more; " in text


# ------------------------------------------------------------------ 24/5 FX


def test_fx_weekend_is_no_bars_and_filling_stays_inside_the_week(tmp_path):
    # hourly EURUSD stamped at bar opens as FX files come (winter: the FX day rolls at 22:00Z): Friday 3 Jan's FX
    # day from Thursday 22:00Z, its quotes stopping after the 19:00Z bar; the week opening Sunday 5 Jan 22:00Z,
    # then Monday's FX day to its last bar opening 21:00Z
    opens = pd.date_range("2025-01-02T22:00Z", "2025-01-03T19:00Z", freq="h").append(
        pd.date_range("2025-01-05T22:00Z", "2025-01-06T21:00Z", freq="h"))
    close = 1.03 + 0.0001 * np.arange(len(opens))
    pd.DataFrame({"time": [t.isoformat() for t in opens], "open": close, "high": close, "low": close,
                  "close": close, "volume": 1.0}).to_csv(tmp_path / "EURUSD.csv", index=False)
    market = HistoricalMarket(tmp_path, make_market(repair=False, calendar="24/5", bar_interval="60m", time_is="open"))
    panel = market.bars(None, market.first_time, market.last_time)
    # Friday's bars close Thursday 23:00Z .. Friday 22:00Z (24, the last two absent); Monday's Sunday 23:00Z ..
    # Monday 22:00Z (24), the first of them Sunday evening's
    assert len(panel.times) == 48 and panel.times[23] == T("2025-01-03T22:00Z")
    assert panel.times[24] == T("2025-01-05T23:00Z")
    assert not ((panel.times > T("2025-01-03T22:00Z")) & (panel.times < T("2025-01-05T23:00Z"))).any()
    assert np.isnan(panel.close[22:24, 0]).all()
    filled = fill_missing_bars(panel, 3)  # max_fill_bars: 3, the shipped default
    assert np.isfinite(filled.close).all()
    np.testing.assert_array_equal(filled.close[22:24, 0], close[21])  # Friday 19:00-20:00Z close carried 2 bars
    np.testing.assert_array_equal(filled.close[24:, 0], close[22:])

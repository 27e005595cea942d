"""SimulatedMarket: calendar alignment, determinism, dynamics, planted signals, quotes and ADV."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from foxlive_core.calendar import TradingCalendar
from foxlive_core.config import HistoricalConfig, MarketConfig, SimulatedConfig
from foxlive_core.data.protocol import MarketData
from foxlive_core.data.simulated import SimulatedMarket as _SimulatedMarket
from foxlive_core.errors import ConfigError, DataError

UTC = "UTC"


def make_market(bar_interval: str = "5m", calendar: str = "XNYS", **simulated) -> MarketConfig:
    """The shipped defaults of config/live_trading.yaml, with ``simulated`` overrides."""
    sim = SimulatedConfig(
        seed=7, start="2025-01-02", start_price_min=20.0, start_price_max=400.0, market_vol_bp=6.0,
        idio_vol_bp=10.0, vol_of_vol=0.15, vol_persistence=0.98, reversal_strength=0.08, drift_strength=0.25,
        base_spread_bps=2.0, spread_vol_mult=0.15, missing_bar_prob=0.001, adv_min_dollars=5e6, adv_max_dollars=5e8,
    )
    return MarketConfig(
        source="simulated", calendar=calendar, bar_interval=bar_interval, max_fill_bars=3,
        historical=HistoricalConfig(path=None, quote_spread_bps=2.0, repair=True),
        simulated=dataclasses.replace(sim, **simulated),
    )


SYMBOLS = [f"S{i:03d}" for i in range(40)]
T = pd.Timestamp
# The market's "now": Monday 2026-03-02 11:02 New York time. No test reads the wall clock.
CLOCK = T("2026-03-02T16:02Z")
SimulatedMarket = functools.partial(_SimulatedMarket, clock=CLOCK)


@pytest.fixture(scope="module")
def market() -> SimulatedMarket:
    return SimulatedMarket(SYMBOLS, make_market())


def assert_panels_equal(a, b):
    assert list(a.times) == list(b.times)
    assert a.symbols == b.symbols
    for f in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


# ------------------------------------------------------------------ calendar and range


def test_first_and_last_time_follow_the_calendar(market):
    assert isinstance(market, MarketData)
    assert market.first_time == T("2025-01-02 14:35", tz=UTC)  # 09:30 ET open + 5 minutes
    assert market.last_time == T("2026-03-02 16:00", tz=UTC)  # the newest bar closed by the clock


def test_the_market_never_serves_a_bar_that_has_not_closed():
    # read once at construction, then once per last_time
    ticking = iter([T("2026-03-02T16:02Z"), T("2026-03-02T16:02Z"), T("2026-03-02T16:05Z"), T("2026-03-02T23:00Z")])
    m = _SimulatedMarket(["A"], make_market(), clock=lambda: next(ticking))
    assert m.last_time == T("2026-03-02 16:00", tz=UTC)
    assert m.last_time == T("2026-03-02 16:05", tz=UTC)  # the clock moved: the new bar is served
    assert m.last_time == T("2026-03-02 21:00", tz=UTC)  # after the close: the session's last bar
    friday = SimulatedMarket(["A"], make_market())
    with pytest.raises(DataError, match=r"after the simulation's last bar 2026-03-02 16:00"):
        friday.bars_ending_at(["A"], "2026-03-02T16:05Z", 3)
    with pytest.raises(DataError, match=r"after the simulation's last bar 2026-03-02 16:00"):
        friday.quotes(["A"], "2026-03-03T15:00Z")
    # a start after the clock has no bar to serve
    with pytest.raises(ConfigError, match=r"market.simulated.start: 2026-03-05 is not before now"):
        SimulatedMarket(["A"], make_market(start="2026-03-05"))


def test_start_on_a_holiday_begins_at_the_next_session():
    m = SimulatedMarket(["A"], make_market(start="2025-01-09"))  # national day of mourning: closed
    assert m.first_time == T("2025-01-10 14:35", tz=UTC)


def test_bar_times_include_half_days_and_skip_holidays(market):
    panel = market.bars(SYMBOLS, "2025-07-02T13:00Z", "2025-07-08T00:00Z")
    expected = TradingCalendar("XNYS", 5).bar_times(T("2025-07-02T13:00Z"), T("2025-07-08T00:00Z"))
    assert list(panel.times) == list(expected)
    days = pd.Series(panel.times.tz_convert("America/New_York").date).value_counts().sort_index()
    # 2 July full (78), 3 July half day to 13:00 ET (42), 4 July holiday, 7 July full (78)
    assert [str(d) for d in days.index] == ["2025-07-02", "2025-07-03", "2025-07-07"]
    assert days.tolist() == [78, 42, 78]
    assert panel.times[78 + 41] == T("2025-07-03 17:00", tz=UTC)


def test_bars_window_is_inclusive_and_bars_ending_at_counts(market):
    panel = market.bars(["S001"], "2025-01-02T14:35Z", "2025-01-02T14:50Z")
    assert list(panel.times) == [T(f"2025-01-02 14:{m}", tz=UTC) for m in (35, 40, 45, 50)]
    # a window may start before the first bar when no bar closes in between (e.g. at the open)
    from_open = market.bars(["S001"], "2025-01-02T14:30Z", "2025-01-02T14:50Z")
    assert list(from_open.times) == list(panel.times)
    # up to the clock's last bar, a window may run on past it when no bar closes in between
    assert market.bars(["S001"], "2026-03-02T15:55Z", "2026-03-02T16:04Z").shape == (2, 1)
    with pytest.raises(DataError, match="after the simulation's last bar"):
        market.bars(["S001"], "2026-03-02T15:55Z", "2026-03-02T16:05Z")
    tail = market.bars_ending_at(["S001"], "2025-01-03T14:52Z", 5)
    assert list(tail.times) == [T("2025-01-02 21:00", tz=UTC)] + [T(f"2025-01-03 14:{m}", tz=UTC) for m in (35, 40, 45, 50)]


def test_errors_name_the_problem(market):
    with pytest.raises(DataError, match=r"unknown symbol.*'NOPE'"):
        market.bars(["S001", "NOPE"], "2025-01-02T14:35Z", "2025-01-02T15:00Z")
    with pytest.raises(DataError, match="timezone-naive"):
        market.bars(["S001"], "2025-01-02 14:35", "2025-01-02T15:00Z")
    with pytest.raises(DataError, match=r"before the simulation's first bar 2025-01-02 14:35"):
        market.bars(["S001"], "2024-12-31T20:00Z", "2025-01-02T15:00Z")
    with pytest.raises(DataError, match=r"after the simulation's last bar 2026-03-02 16:00"):
        market.bars(["S001"], "2026-03-02T15:00Z", "2026-03-04T15:00Z")
    with pytest.raises(DataError, match=r"before the simulation's first bar"):
        market.quotes(["S001"], "2025-01-02T14:34Z")
    with pytest.raises(DataError, match=r"only 3 bars .* 5 asked"):
        market.bars_ending_at(["S001"], "2025-01-02T14:45Z", 5)
    with pytest.raises(DataError, match="unknown symbol"):
        market.quotes(["ZZZ"], "2025-01-03T15:00Z")
    with pytest.raises(DataError, match="timezone-naive"):
        market.adv(["S001"], "2025-01-03 15:00")


# ------------------------------------------------------------------ determinism


def test_window_and_call_order_do_not_change_values():
    cfg = make_market()
    reference = SimulatedMarket(SYMBOLS, cfg).bars(None, "2025-01-02T14:35Z", "2025-02-28T21:00Z")

    # a fresh market asked late-first, with the smallest cache, regenerates from checkpoints
    other = SimulatedMarket(SYMBOLS, cfg, cache_sessions=2)
    late = other.bars(SYMBOLS, "2025-02-20T15:00Z", "2025-02-21T18:00Z")
    early = other.bars(SYMBOLS, "2025-01-21T14:35Z", "2025-01-23T21:00Z")  # sessions 12-14: checkpoint 10 + replay
    window = other.bars_ending_at(SYMBOLS, "2025-02-03T15:00Z", 100)
    for part in (late, early, window):
        rows = reference.times.get_indexer(part.times)
        assert (rows >= 0).all()
        assert_panels_equal(part, reference.rows(rows))
    assert len(other._cache) <= 2


def test_same_seed_same_market_other_seed_other_market():
    a = SimulatedMarket(SYMBOLS[:5], make_market()).bars(None, "2025-01-06T14:35Z", "2025-01-06T21:00Z")
    b = SimulatedMarket(SYMBOLS[:5], make_market()).bars(None, "2025-01-06T14:35Z", "2025-01-06T21:00Z")
    c = SimulatedMarket(SYMBOLS[:5], make_market(seed=8)).bars(None, "2025-01-06T14:35Z", "2025-01-06T21:00Z")
    assert_panels_equal(a, b)
    assert not np.allclose(a.close, c.close, equal_nan=True)


def test_symbol_subset_is_the_same_columns(market):
    full = market.bars(None, "2025-01-03T14:35Z", "2025-01-06T21:00Z")
    subset = market.bars(["S007", "S002"], "2025-01-03T14:35Z", "2025-01-06T21:00Z")
    assert_panels_equal(subset, full.select(["S007", "S002"]))


# ------------------------------------------------------------------ dynamics


def test_ohlc_consistency_and_continuity(market):
    p = market.bars(None, "2025-01-02T14:35Z", "2025-01-31T21:00Z")
    ok = np.isfinite(p.close)
    assert (p.high[ok] >= np.maximum(p.open[ok], p.close[ok])).all()
    assert (p.low[ok] <= np.minimum(p.open[ok], p.close[ok])).all()
    assert (p.low[ok] > 0).all()
    assert (p.volume[ok] >= 1).all() and (p.volume[ok] == np.round(p.volume[ok])).all()
    session = p.times.tz_convert("America/New_York").date
    same_session = session[1:] == session[:-1]
    both = ok[1:] & ok[:-1]
    inside = both & same_session[:, None]
    # inside a session each bar opens at the previous close
    np.testing.assert_allclose(p.open[1:][inside], p.close[:-1][inside], rtol=1e-12)
    # at a session open the gap moves the open away from the previous close
    across = both & ~same_session[:, None]
    assert np.mean(np.abs(p.open[1:][across] / p.close[:-1][across] - 1) > 1e-6) > 0.95


def test_missing_bars_leave_the_price_process_untouched():
    full = SimulatedMarket(SYMBOLS, make_market(missing_bar_prob=0.0)).bars(None, "2025-01-02T14:35Z", "2025-01-10T21:00Z")
    holey = SimulatedMarket(SYMBOLS, make_market(missing_bar_prob=0.2)).bars(None, "2025-01-02T14:35Z", "2025-01-10T21:00Z")
    assert np.isfinite(full.close).all()
    missing = np.isnan(holey.close)
    n = missing.size  # 6 sessions x 78 bars x 40 symbols = 18720; binomial sd of the share ~ 0.003
    assert n == 6 * 78 * 40
    assert 0.18 < missing.mean() < 0.22
    for f in ("open", "high", "low", "close", "volume"):
        assert np.isnan(getattr(holey, f)[missing]).all()
        np.testing.assert_array_equal(getattr(holey, f)[~missing], getattr(full, f)[~missing])


def test_volume_profile_is_u_shaped(market):
    p = market.bars(None, "2025-01-02T14:35Z", "2025-01-31T21:00Z")
    dollars = (p.close * p.volume).reshape(-1, 78, len(SYMBOLS))  # 20 full sessions of 78 bars
    by_bar = np.nanmean(dollars / np.nanmean(dollars, axis=1, keepdims=True), axis=(0, 2))
    # weights 1 + 2(2x-1)^2: about 2.95 at the first/last bar, 1.0 at midday, mean 1.67
    assert by_bar[0] / by_bar[38] > 2.2
    assert by_bar[-1] / by_bar[38] > 2.2
    assert by_bar[[0, -1]].min() > by_bar[30:48].max()


def test_spread_is_base_plus_volatility_term():
    flat = SimulatedMarket(SYMBOLS, make_market(spread_vol_mult=0.0, missing_bar_prob=0.0))
    np.testing.assert_allclose(flat.spread_bps(None, "2025-01-02T14:35Z", "2025-01-03T21:00Z"), 2.0)

    m = SimulatedMarket(SYMBOLS, make_market(missing_bar_prob=0.0))
    spread = m.spread_bps(None, "2025-01-02T14:35Z", "2025-01-31T21:00Z")
    p = m.bars(None, "2025-01-02T14:35Z", "2025-01-31T21:00Z")
    assert (spread > 2.0).all()
    # spread moves with volatility: bars in the widest-spread fifth move more than those in the tightest
    move = np.abs(np.log(p.close / p.open))
    lo, hi = np.quantile(spread, [0.2, 0.8])
    assert move[spread >= hi].mean() > 1.5 * move[spread <= lo].mean()


def test_bar_interval_scales_volatility_and_bar_count():
    syms = [f"V{i}" for i in range(200)]
    window = ("2025-01-02T14:35Z", "2025-01-31T21:00Z")
    five = SimulatedMarket(syms, make_market("5m", missing_bar_prob=0.0)).bars(None, *window)
    fifteen = SimulatedMarket(syms, make_market("15m", missing_bar_prob=0.0)).bars(None, *window)
    daily = SimulatedMarket(syms, make_market("1d", missing_bar_prob=0.0)).bars(None, "2025-01-02T21:00Z", window[1])
    assert fifteen.shape == (20 * 26, 200)
    assert daily.shape == (20, 200) and (daily.times.hour == 21).all()
    ratio = np.std(np.log(fifteen.close / fifteen.open)) / np.std(np.log(five.close / five.open))
    assert 1.5 < ratio < 2.0  # sqrt(15/5) = 1.73


def test_round_the_clock_calendar():
    m = SimulatedMarket(["A", "B"], make_market("60m", calendar="24/7", start="2025-03-01"))
    assert m.first_time == T("2025-03-01 01:00", tz=UTC)
    p = m.bars(None, "2025-03-01T01:00Z", "2025-03-03T00:00Z")
    assert p.shape == (48, 2)
    assert m.last_time == T("2026-03-02 16:00", tz=UTC)  # on the hour before the clock, weekends included


# ------------------------------------------------------------------ planted signals


def _mean_rank_ic(signal: np.ndarray, outcome: np.ndarray) -> float:
    return float(np.mean([spearmanr(s, o)[0] for s, o in zip(signal, outcome)]))


def test_planted_reversal_is_found_and_absent_without_it():
    syms = [f"R{i}" for i in range(100)]
    window = ("2025-01-02T14:35Z", "2025-01-08T21:00Z")

    def ic(cfg):
        lr = np.log(SimulatedMarket(syms, cfg).bars(None, *window).close)
        past3, nxt = lr[3:-1] - lr[:-4], lr[4:] - lr[3:-1]
        return _mean_rank_ic(-past3, nxt)

    assert ic(make_market(missing_bar_prob=0.0)) > 0.06  # measured ~0.10
    assert abs(ic(make_market(missing_bar_prob=0.0, reversal_strength=0.0))) < 0.03


def test_planted_drift_is_found_and_absent_without_it():
    syms = [f"D{i}" for i in range(200)]

    def ic(cfg):
        lr = np.log(SimulatedMarket(syms, cfg).bars(None, "2025-01-02T21:00Z", "2025-12-31T21:00Z").close)
        past5, nxt = lr[5:-1] - lr[:-6], lr[6:] - lr[5:-1]
        return _mean_rank_ic(past5, nxt)

    assert ic(make_market("1d", missing_bar_prob=0.0, reversal_strength=0.0)) > 0.02
    assert abs(ic(make_market("1d", missing_bar_prob=0.0, reversal_strength=0.0, drift_strength=0.0))) < 0.015


# ------------------------------------------------------------------ quotes and adv


def test_quotes_come_from_the_latest_bar(market):
    p = market.bars(None, "2025-01-03T14:35Z", "2025-01-03T21:00Z")
    spread = market.spread_bps(None, "2025-01-03T14:35Z", "2025-01-03T21:00Z")
    row = p.times.get_loc(T("2025-01-03 15:00", tz=UTC))
    q = market.quotes(None, "2025-01-03T15:02:30Z")  # between bars: the 15:00 bar
    ok = np.isfinite(p.close[row])
    np.testing.assert_allclose(q.mid[ok], p.close[row][ok], rtol=1e-12)
    np.testing.assert_allclose(((q.ask - q.bid) / q.mid * 1e4)[ok], spread[row][ok], rtol=1e-9)
    assert (q.time[ok] == np.datetime64("2025-01-03T15:00:00", "ns")).all()
    assert (q.bid_size % 100 == 0).all() and (q.bid_size >= 100).all() and (q.ask_size <= 5000).all()
    # overnight: the previous session's last bar
    night = market.quotes(["S003"], "2025-01-04T03:00Z")
    assert night.time[0] == np.datetime64("2025-01-03T21:00:00", "ns")
    assert night.mid[0] == pytest.approx(p.close[-1, SYMBOLS.index("S003")], rel=1e-12)


def test_quote_of_a_missing_bar_is_the_previous_bar():
    m = SimulatedMarket(SYMBOLS, make_market(missing_bar_prob=0.2))
    p = m.bars(None, "2025-01-06T14:35Z", "2025-01-06T21:00Z")
    rows, cols = np.nonzero(np.isnan(p.close[1:]) & np.isfinite(p.close[:-1]))
    row, col = rows[0] + 1, cols[0]
    q = m.quotes([SYMBOLS[col]], p.times[row])
    assert q.time[0] == p.times[row - 1].tz_localize(None).as_unit("ns").to_datetime64()
    assert q.mid[0] == pytest.approx(p.close[row - 1, col], rel=1e-12)


@pytest.mark.parametrize("missing", [0.3, 0.985])
def test_each_quote_is_the_latest_bar_with_a_price_in_the_last_two_sessions(missing):
    # A plain scan per symbol: back from `at` over the last 2 x 78 bars to the first finite close.
    m = SimulatedMarket(SYMBOLS, make_market(missing_bar_prob=missing))
    nobody = 0
    for at in ["2025-01-08T14:35Z", "2025-01-08T14:37Z", "2025-01-09T03:00Z", "2025-01-10T17:10Z"]:
        q = m.quotes(None, at)
        p = m.bars_ending_at(None, at, 156)
        spread = m.spread_bps(None, p.times[0], p.times[-1])
        for j in range(len(SYMBOLS)):
            rows = [r for r in range(155, -1, -1) if np.isfinite(p.close[r, j])]
            if not rows:
                nobody += 1
                assert np.isnan(q.mid[j]) and np.isnan(q.bid[j]) and np.isnat(q.time[j])
                assert q.bid_size[j] == q.ask_size[j] == 0
                continue
            r = rows[0]
            assert q.mid[j] == pytest.approx(p.close[r, j], rel=1e-12)
            assert (q.ask[j] - q.bid[j]) / q.mid[j] * 1e4 == pytest.approx(spread[r, j], rel=1e-9)
            assert q.time[j] == p.times[r].tz_localize(None).as_unit("ns").to_datetime64()
            assert q.bid_size[j] >= 100 and q.ask_size[j] >= 100
    if missing > 0.9:
        assert nobody > 0  # the case of no bar at all was met


def test_adv_averages_the_previous_sessions(market):
    assert ((market.adv_level >= 5e6) & (market.adv_level <= 5e8)).all()
    np.testing.assert_array_equal(market.adv(None, "2025-01-02T18:00Z"), market.adv_level)
    p = market.bars(None, "2025-01-02T14:35Z", "2025-02-28T21:00Z")
    frame = pd.DataFrame(p.close * p.volume, index=p.times.tz_convert("America/New_York").date)
    daily = frame.groupby(level=0).sum(min_count=1).to_numpy()  # (sessions, N)
    # at the close of session 4 (2025-01-08) that session is not yet complete: sessions 0-3
    np.testing.assert_allclose(market.adv(None, "2025-01-08T21:00Z"), daily[:4].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(market.adv(None, "2025-01-08T21:00:01Z"), daily[:5].mean(axis=0), rtol=1e-12)
    # session 30 uses sessions 10-29 only
    session30 = p.times[30 * 78 + 10]
    np.testing.assert_allclose(market.adv(["S005"], session30), daily[10:30, [5]].mean(axis=0), rtol=1e-12)
    ratio = market.adv(None, session30) / market.adv_level
    assert ((ratio > 0.4) & (ratio < 2.5)).all()

"""The book report: figures against empyrical-reloaded, and a tiny hand-made book worked out by hand."""

from __future__ import annotations

import dataclasses
import json

import empyrical
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from foxlive_core.errors import StateError
from foxlive_core.reports import (
    IMPACT_NOTE,
    bars_per_year,
    book_snapshot,
    build_report,
    drawdown,
    fill_costs,
    render,
    to_json,
    trade_outcomes,
    write_plots,
)

PERIODS = 19656.0  # 252 sessions x 78 five-minute bars
T0 = pd.Timestamp("2025-05-01T13:35Z")
HORIZONS = ("5m", "60m", "1d")


def _cycles(values, gross=None) -> pd.DataFrame:
    n = len(values)
    return pd.DataFrame({
        "cycle_time": pd.date_range(T0, periods=n, freq="5min"),
        "portfolio_value": np.asarray(values, dtype=float),
        "gross_exposure": np.full(n, 0.1) if gross is None else gross,
        "n_trade": np.ones(n, dtype=int), "n_hold": np.ones(n, dtype=int), "n_blocked": np.zeros(n, dtype=int),
        "halted": np.zeros(n, dtype=int),
    })


NO_ORDERS = pd.DataFrame({"cycle_time": pd.Series([], dtype=str), "symbol": [], "side": [], "filled_quantity": [],
                          "price": [], "fee": []})
NO_DECISIONS = pd.DataFrame({c: [] for c in ("cycle_time", "symbol", "decision", "horizon", "shares", "price", "bid", "ask")})


def _report_of_returns(returns, starting=1_000_000.0):
    values = starting * np.cumprod(1.0 + np.asarray(returns))
    return build_report(_cycles(values), NO_ORDERS, NO_DECISIONS, starting_value=starting, bar_interval="5m",
                        periods_per_year=PERIODS, horizons=HORIZONS, book="t")


def _assert_as_empyrical(returns):
    r = _report_of_returns(returns)
    rets = np.asarray(returns, dtype=float)
    assert r.sharpe == pytest.approx(empyrical.sharpe_ratio(rets, annualization=PERIODS), rel=1e-9)
    assert r.sortino == pytest.approx(empyrical.sortino_ratio(rets, annualization=PERIODS), rel=1e-9)
    assert -r.max_drawdown == pytest.approx(empyrical.max_drawdown(rets), rel=1e-9, abs=1e-15)
    with np.errstate(over="ignore"):
        expected = empyrical.annual_return(rets, annualization=PERIODS)
    if np.isfinite(expected):
        assert r.annual_return == pytest.approx(expected, rel=1e-9)
    else:  # a year of such bars compounds beyond a float
        assert r.annual_return is None
    assert r.annual_volatility == pytest.approx(empyrical.annual_volatility(rets, annualization=PERIODS), rel=1e-9)
    assert r.total_return == pytest.approx(empyrical.cum_returns_final(rets), rel=1e-9, abs=1e-15)


def test_figures_match_empyrical_on_a_month_of_bar_returns():
    rets = np.random.default_rng(3).normal(-2e-6, 1.5e-4, size=21 * 78)
    _assert_as_empyrical(rets)
    r = _report_of_returns(rets)
    assert r.periods == 1638 and r.years == pytest.approx(1638 / 19656)


@settings(max_examples=60, deadline=None)
@given(arrays(np.int64, st.integers(3, 60), elements=st.integers(-500, 500)).filter(
    lambda bps: (bps < 0).any() and bps.std() > 0))
def test_figures_match_empyrical_on_any_returns(bps):
    _assert_as_empyrical(bps * 1e-4)


def test_sharpe_standard_error_is_los_iid_formula():
    r = _report_of_returns([0.01, -0.005, 0.002, 0.004])
    rets = np.array([0.01, -0.005, 0.002, 0.004])
    per_bar = rets.mean() / rets.std(ddof=1)
    assert r.sharpe == pytest.approx(per_bar * np.sqrt(PERIODS))
    assert r.sharpe_se == pytest.approx(np.sqrt((1 + per_bar**2 / 2) / 4) * np.sqrt(PERIODS))


def test_too_few_periods_or_no_loss_is_none_not_zero():
    one = _report_of_returns([0.01])
    assert one.sharpe is None and one.sortino is None and one.sharpe_se is None and one.annual_volatility is None
    gains = _report_of_returns([0.01, 0.02, 0.005])
    assert gains.sortino is None and gains.sharpe is not None and gains.max_drawdown == 0.0
    assert json.loads(to_json(gains))["sortino"] is None
    assert "Sortino n/a" in render(gains) and "max drawdown 0.00 %" in render(gains)


def test_bars_per_year_follows_the_calendar(make_config):
    market = make_config().market
    assert bars_per_year(market) == 252 * 78
    assert bars_per_year(dataclasses.replace(market, calendar="24/7", bar_interval="60m")) == 365 * 24
    assert bars_per_year(dataclasses.replace(market, calendar="24/5", bar_interval="15m")) == 260 * 96
    assert bars_per_year(dataclasses.replace(market, bar_interval="1d")) == 252


def test_drawdown_duration_runs_from_the_last_bar_at_the_peak_to_the_recovery():
    # V_0..V_6: the peak 10,100 is held at indices 1 and 2, the trough is 9,900 at 3, back at 10,100 at 5.
    dd = drawdown([10_000, 10_100, 10_100, 9_900, 10_050, 10_100, 10_000])
    assert dd.depth == pytest.approx(200 / 10_100)
    assert (dd.peak, dd.trough, dd.recovery, dd.bars) == (2, 3, 5, 3)
    never = drawdown([100, 110, 99, 104])
    assert (never.peak, never.trough, never.recovery, never.bars) == (1, 2, None, 2)
    assert never.depth == pytest.approx(11 / 110)
    from_start = drawdown([100, 98, 99])
    assert (from_start.peak, from_start.trough, from_start.bars) == (0, 1, 2)


def test_a_window_keeps_the_entry_price_of_fills_before_it():
    # Bought 4 at 10 before the window, 2 more at 13 inside it (average 11), then sold 6 at 12: one winning exit.
    out = trade_outcomes(["C", "C", "C"], [4, 2, -6], [10.0, 13.0, 12.0], [False, True, True])
    assert out["long"] == {"entries": 1, "exits": 1, "hits": 1, "realised_pnl": pytest.approx(6.0), "hit_rate": 1.0}
    assert out["short"]["entries"] == 0 and out["short"]["hit_rate"] is None
    assert (out["open_long"], out["open_short"]) == (0, 0)


def test_fill_costs_split_against_the_mid():
    # Buy 10 at 100.25 on 99.90 / 100.10 (mid 100): 1.00 half spread, 1.50 slippage; sell 5 at 50 on 50.05 / 50.15.
    c = fill_costs([1, -1, 1], [10, 5, 2], [100.25, 50.0, 20.0], [100.0, 50.10, np.nan], [99.90, 50.05, np.nan],
                   [100.10, 50.15, np.nan], [0.10, 0.05, 0.01])
    assert c["spread"] == pytest.approx(1.00 + 0.25)
    assert c["slippage"] == pytest.approx(1.50 + 0.25)
    assert c["fees"] == pytest.approx(0.16) and c["impact"] == 0.0
    assert c["total"] == pytest.approx(1.25 + 1.75 + 0.16)
    assert c["fills_without_quote"] == 1


def _hand_book():
    """Six cycles of two symbols (values, fills and quotes chosen so that every figure is worked out by hand)."""
    values = [10_100, 10_100, 9_900, 10_050, 10_100, 10_000]
    cycles = _cycles(values, gross=np.array([0.10, 0.15, 0.15, 0.05, 0.03, 0.0]))
    t = cycles["cycle_time"]
    # (cycle, symbol, side, filled, price, fee, mid, bid, ask, horizon)
    fills = [
        (0, "A", "buy", 10, 100.25, 0.10, 100.00, 99.90, 100.10, "1d"),   # enter long A
        (1, "B", "sell", 5, 50.00, 0.05, 50.10, 50.05, 50.15, "60m"),     # enter short B
        (2, "A", "sell", 10, 101.00, 0.10, 101.20, 101.10, 101.30, ""),   # exit long A: +7.50
        (3, "B", "buy", 8, 49.00, 0.04, 48.925, 48.90, 48.95, "1d"),      # flip B: exit short +5.00, enter long 3
        (4, "B", "sell", 3, 48.00, 0.03, 48.10, 48.05, 48.15, ""),        # exit long B: -3.00
    ]
    orders = pd.DataFrame({
        "cycle_time": [t[f[0]].isoformat() for f in fills] + [t[5].isoformat()],
        "symbol": [f[1] for f in fills] + ["A"],
        "side": [f[2] for f in fills] + ["buy"],
        "filled_quantity": [f[3] for f in fills] + [0],  # the last order was rejected
        "price": [f[4] for f in fills] + [None],
        "fee": [f[5] for f in fills] + [0.0],
    })
    rows = []
    for c in range(6):
        for s in ("A", "B"):
            f = next((f for f in fills if f[0] == c and f[1] == s), None)
            if f is not None:
                q = f[3] if f[2] == "buy" else -f[3]
                rows.append((t[c], s, "TRADE", f[9], q, f[6], f[7], f[8]))
            else:
                best = "5m" if (c, s) == (5, "B") else ""
                rows.append((t[c], s, "HOLD", best, 0, 60.0, 59.9, 60.1))
    decisions = pd.DataFrame(rows, columns=["cycle_time", "symbol", "decision", "horizon", "shares", "price", "bid", "ask"])
    return cycles, orders, decisions


def test_hand_made_book():
    cycles, orders, decisions = _hand_book()
    r = build_report(cycles, orders, decisions, starting_value=10_000.0, bar_interval="5m", periods_per_year=PERIODS,
                     horizons=HORIZONS, book="hand")
    assert r.periods == 6 and r.pnl == pytest.approx(0.0) and r.final_value == 10_000
    # Drawdown over V_0..V_6 = 10,000, 10,100, 10,100, 9,900, ...: peak at the second cycle, recovered at the fifth.
    assert r.max_drawdown == pytest.approx(200 / 10_100)
    assert r.max_drawdown_peak == cycles["cycle_time"][1] and r.max_drawdown_trough == cycles["cycle_time"][2]
    assert r.max_drawdown_recovered == cycles["cycle_time"][4] and r.max_drawdown_bars == 3
    # Turnover: 1,002.50 + 250 + 1,010 + 392 + 144 = 2,798.50 traded over a mean value of 60,250 / 6.
    assert r.traded_notional == pytest.approx(2798.5)
    assert r.turnover == pytest.approx(2798.5 * 6 / 60_250)
    assert r.turnover_annual == pytest.approx(2798.5 * 6 / 60_250 * PERIODS / 6)
    assert r.mean_gross_exposure == pytest.approx(0.48 / 6)
    # Costs: half spreads 1.00 + 0.25 + 1.00 + 0.20 + 0.15, slippage 1.50 + 0.25 + 1.00 + 0.40 + 0.15.
    assert r.costs["spread"] == pytest.approx(2.60)
    assert r.costs["slippage"] == pytest.approx(3.30)
    assert r.costs["fees"] == pytest.approx(0.32)
    assert r.costs["impact"] == 0.0 and r.costs["impact_note"] == IMPACT_NOTE
    assert r.costs["total"] == pytest.approx(6.22)
    assert r.costs["bps_of_traded"] == pytest.approx(6.22 / 2798.5 * 1e4)
    assert (r.orders, r.fills, r.rejected) == (6, 5, 1)
    # Exits: long A +7.50 (hit), short B +5.00 (hit), long B -3.00 (miss).
    long, short = r.trades["long"], r.trades["short"]
    assert (long["entries"], long["exits"], long["hits"]) == (2, 2, 1)
    assert (short["entries"], short["exits"], short["hits"]) == (1, 1, 1)
    assert long["realised_pnl"] == pytest.approx(4.5) and short["realised_pnl"] == pytest.approx(5.0)
    assert r.trades["hit_rate"] == pytest.approx(2 / 3) and long["hit_rate"] == 0.5
    assert (r.trades["open_long"], r.trades["open_short"]) == (0, 0)
    counts = {h["horizon"]: (h["best"], h["traded"]) for h in r.horizons}
    assert counts == {"5m": (1, 0), "60m": (1, 1), "1d": (2, 2), "": (8, 2)}
    assert r.decisions == {"trade": 6, "hold": 6, "blocked": 0}
    assert r.realised_ic == [] and r.attribution is None


def test_hand_made_book_as_table_json_and_plots(tmp_path):
    cycles, orders, decisions = _hand_book()
    attribution = {
        "cycles": 6, "horizons": ["5m", "1d"], "families": ["ridge"],
        "stage_ic": [
            {"stage": "raw", "family": "ridge", "horizon": "5m", "mean_ic": 0.05, "t_stat": 2.5, "n_times": 6, "n_independent": 6},
            {"stage": "raw", "family": "ridge", "horizon": "1d", "mean_ic": 0.1, "t_stat": None, "n_times": 2, "n_independent": 1},
            {"stage": "blend", "family": "", "horizon": "5m", "mean_ic": 0.04, "t_stat": 2.0, "n_times": 6, "n_independent": 6},
            {"stage": "arbitrated", "family": "", "horizon": "5m", "mean_ic": 0.03, "t_stat": 1.0, "n_times": 6, "n_independent": 6},
        ],
        "calibration": [], "fills": {"moves": {}, "cost_paid_bps": None, "fills": 0}, "entries": [],
    }
    r = build_report(cycles, orders, decisions, starting_value=10_000.0, bar_interval="5m", periods_per_year=PERIODS,
                     horizons=HORIZONS, book="hand", attribution=attribution)
    assert [(x["family"], x["horizon"]) for x in r.realised_ic] == [("ridge", "5m"), ("ridge", "1d"), ("blend", "5m")]
    text = render(r)
    assert "annualised from 6 bar returns (0.000 years of 19,656 5m bars a year)" in text
    assert f"impact 0.00 ({IMPACT_NOTE})" in text
    assert "spread 2.60  slippage 3.30" in text and "fees 0.32" in text
    assert "long 2 entries, 2 exits (hit rate 50%" in text
    assert "+0.050 (+2.5)" in text and "signal attribution over 6 cycles" in text
    data = json.loads(to_json(r))
    assert data["costs"]["spread"] == pytest.approx(2.60) and data["max_drawdown_bars"] == 3
    assert data["first_cycle"] == "2025-05-01T13:35:00+00:00" and data["periods_per_year"] == PERIODS
    assert "equity" not in data and data["attribution"]["cycles"] == 6
    paths = write_plots(r, tmp_path / "plots")
    assert [p.name for p in paths] == ["hand_equity.png", "hand_ic.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_a_book_without_cycles_is_a_clear_error():
    with pytest.raises(StateError, match="no cycles to report"):
        build_report(_cycles([])[:0], NO_ORDERS, NO_DECISIONS, starting_value=1.0, bar_interval="5m",
                     periods_per_year=PERIODS, horizons=HORIZONS, book="empty")


class _QuoteGoesMissing:
    """The small run's market, with ``symbol``'s quote NaN at and after ``after`` (both set by the test)."""

    def __init__(self, market):
        self._m, self.symbol, self.after = market, None, None

    def __getattr__(self, name):
        return getattr(self._m, name)

    def quotes(self, symbols, at):
        from foxlive_core.data.types import QuoteSnapshot

        q = self._m.quotes(symbols, at)
        if self.symbol is None or pd.Timestamp(at) < self.after:
            return q
        bid, ask = q.bid.copy(), q.ask.copy()
        bid[list(symbols).index(self.symbol)] = ask[list(symbols).index(self.symbol)] = np.nan
        return QuoteSnapshot(q.symbols, bid, ask, q.bid_size, q.ask_size, q.time)


def test_the_snapshot_marks_the_book_as_its_cycle_did(engine_home, small_run):
    """A held symbol without a quote is marked at its last close, as the engine marked it, not at its
    average price: the snapshot's value is the cycle's committed value."""
    from tests.conftest import ACTIVE

    market = _QuoteGoesMissing(small_run[1])
    engine = engine_home(ACTIVE, market_override=market)
    times = engine.cycle_times(pd.Timestamp("2025-05-01T13:30Z"), pd.Timestamp("2025-05-01T20:00Z"))
    book = "snap"
    for i, t in enumerate(times[:-1]):
        engine.run_cycle(book, t)
        if engine.store.load(book).positions:
            break
    state = engine.store.load(book)
    symbol = sorted(state.positions)[0]
    market.symbol, market.after = symbol, times[i + 1]
    engine.run_cycle(book, times[i + 1])

    snap = book_snapshot(engine.store, book)
    state = engine.store.load(book)
    assert snap.as_of == times[i + 1] and snap.value == engine.store.last_cycle(book)["portfolio_value"]
    # By hand: cash + each position at its mid, the symbol without a quote at the bar's close.
    symbols = list(engine.symbols)
    mids = small_run[1].quotes(symbols, times[i + 1]).mid
    close = small_run[1].bars([symbol], times[i + 1] - pd.Timedelta(minutes=30), times[i + 1]).close[-1, 0]
    marks = {s: (close if s == symbol else mids[symbols.index(s)]) for s in state.positions}
    expected = state.cash + sum(q * marks[s] for s, (q, _) in state.positions.items())
    assert snap.value == pytest.approx(expected, rel=1e-12)
    row = snap.positions.set_index("symbol").loc[symbol]
    assert row["mark"] == close != state.positions[symbol][1]
    assert list(snap.positions["symbol"]) == sorted(state.positions, key=symbols.index)
    assert snap.gross == pytest.approx(sum(abs(q * marks[s]) for s, (q, _) in state.positions.items()) / expected)
    with pytest.raises(StateError, match="no committed cycle"):
        book_snapshot(engine.store, "nobook")

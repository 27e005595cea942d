"""One ledger: positions and cash are a fold over the append-only fill ledger, and a check rebuilds them."""

from __future__ import annotations

import math
import sqlite3
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foxlive_core.brokers.protocol import Fill
from foxlive_core.errors import StateError
from foxlive_core.portfolio import ADJUSTMENT, FILL, Holdings, LedgerEntry, differences, fill_entry, position_after
from foxlive_core.state import CycleRecord, StateStore

T0 = pd.Timestamp("2025-05-01T14:00Z")
NOW = datetime(2025, 5, 1, 14, 0, tzinfo=timezone.utc)


def fill(order_id: str, symbol: str, signed: int, price: float, fee: float = 0.0) -> Fill:
    side = "buy" if signed > 0 else "sell"
    return Fill(order_id, symbol, side, abs(signed), price, fee, abs(signed) * price, NOW)


def record(t, entries) -> CycleRecord:
    return CycleRecord(cycle_time=t, portfolio_value=0.0, cash=0.0, gross_exposure=0.0, net_exposure=0.0, drawdown=0.0,
                       daily_return=0.0, n_trade=0, n_hold=0, n_blocked=0, n_orders=0, n_fills=len(entries), fees=0.0,
                       traded_notional=0.0, halted=False, summary={}, orders=[], ledger=tuple(entries))


# ------------------------------------------------------------------ the average-price rule, by hand


@pytest.mark.parametrize("before, trade, after", [
    ((0, 0.0), (10, 100.0), (10, 100.0)),          # open long
    ((10, 100.0), (30, 104.0), (40, 103.0)),       # add: (10*100 + 30*104) / 40
    ((40, 103.0), (-15, 120.0), (25, 103.0)),      # reduce: the average stays
    ((25, 103.0), (-25, 90.0), (0, 0.0)),          # close
    ((25, 103.0), (-40, 90.0), (-15, 90.0)),       # flip: the new side starts at the fill price
    ((-15, 90.0), (-5, 98.0), (-20, 92.0)),        # add to a short: (15*90 + 5*98) / 20
    ((-20, 92.0), (8, 80.0), (-12, 92.0)),         # cover part of it
])
def test_position_after(before, trade, after):
    q, p = position_after(*before, *trade)
    assert q == after[0] and p == pytest.approx(after[1], rel=1e-12)


def test_the_fold_of_a_ledger_by_hand():
    entries = [
        LedgerEntry("deposit", NOW, "book", cash=10_000.0),
        fill_entry(fill("a", "AAA", 10, 100.0, 0.5), T0, "cycle"),      # cash 10000 - 1000.5
        fill_entry(fill("b", "BBB", -20, 50.0, 0.25), T0, "cycle"),     # cash + 1000 - 0.25
        fill_entry(fill("c", "AAA", -10, 110.0, 0.5), T0, "cycle"),     # cash + 1100 - 0.5: AAA closed
        LedgerEntry(ADJUSTMENT, NOW, "reconcile", symbol="BBB", quantity=5, price=51.0),  # -15 @ 51
        LedgerEntry(ADJUSTMENT, NOW, "reconcile", cash=-12.5),
    ]
    holdings = Holdings.fold(entries)
    assert holdings.positions == {"BBB": (-15, 51.0)}
    assert holdings.cash == pytest.approx(10_000 - 1000.5 + 999.75 + 1099.5 - 12.5, abs=1e-9)  # 11086.25


def test_holdings_are_marked_at_the_mid_else_the_last_close_else_the_average_price():
    holdings = Holdings(1000.0, {"AAA": (10, 100.0), "BBB": (-5, 40.0), "OLD": (2, 7.0)})
    portfolio = holdings.marked(("AAA", "BBB", "CCC"), np.array([101.0, np.nan, 0.0]), np.array([99.0, np.nan, 12.0]))
    np.testing.assert_array_equal(portfolio.quantity, [10, -5, 0])
    np.testing.assert_array_equal(portfolio.mark, [101.0, 40.0, 12.0])
    assert portfolio.value == 1000.0 + 1010.0 - 200.0 + 14.0  # OLD, outside the universe, at its average price


# ------------------------------------------------------------------ the fold against a plain reference

fills_strategy = st.lists(
    st.tuples(st.sampled_from(["AAA", "BBB", "CCC"]), st.integers(-500, 500).filter(bool),
              st.floats(1.0, 500.0, allow_nan=False), st.floats(0.0, 5.0, allow_nan=False)),
    max_size=60,
)


def reference(start_cash: float, trades) -> tuple[float, dict[str, tuple[int, float]]]:
    """Average cost by cost basis: adds add q*p, reductions shrink the basis pro rata, a flip restarts it."""
    basis: dict[str, float] = {}
    qty: dict[str, int] = {}
    for symbol, q, p, _ in trades:
        old = qty.get(symbol, 0)
        new = old + q
        if old == 0 or (old > 0) == (q > 0):
            basis[symbol] = basis.get(symbol, 0.0) + q * p
        elif (new > 0) == (old > 0) or new == 0:
            basis[symbol] = basis[symbol] * new / old
        else:
            basis[symbol] = new * p
        qty[symbol] = new
    cash = start_cash - math.fsum(q * p + fee for _, q, p, fee in trades)
    return cash, {s: (q, basis[s] / q) for s, q in qty.items() if q}


@settings(max_examples=300, deadline=None)
@given(fills_strategy)
def test_the_fold_equals_a_plain_cost_basis_reference(trades):
    entries = [LedgerEntry("deposit", NOW, "book", cash=100_000.0)]
    entries += [fill_entry(fill(f"o{i}", s, q, p, fee), T0, "cycle") for i, (s, q, p, fee) in enumerate(trades)]
    holdings = Holdings.fold(entries)
    cash, positions = reference(100_000.0, trades)
    assert holdings.cash == pytest.approx(cash, abs=1e-6)
    assert holdings.positions.keys() == positions.keys()
    for symbol, (q, p) in positions.items():
        assert holdings.positions[symbol][0] == q
        assert holdings.positions[symbol][1] == pytest.approx(p, rel=1e-9)


@settings(max_examples=25, deadline=None)
@given(st.lists(fills_strategy, min_size=1, max_size=5))
def test_a_committed_book_equals_the_fold_of_its_ledger_and_the_check_says_so(tmp_path_factory, cycles):
    """Cycles of random fills committed as a live book does: the stored cash and positions are the ledger's fold."""
    store = StateStore(tmp_path_factory.mktemp("ledger") / "state.sqlite")
    store.create_book("b", 100_000.0)
    state = store.load("b")
    n = 0
    for c, trades in enumerate(cycles):
        t = T0 + pd.Timedelta(minutes=5 * c)
        booked = []
        for s, q, p, fee in trades:
            entry = fill_entry(fill(f"b:{c}:{n}", s, q, p, fee), t, "cycle")
            state.holdings.apply(entry)
            booked.append(entry)
            n += 1
        state.last_cycle_time, state.cycle_count = t, c + 1
        store.commit_cycles(state, [record(t, booked)], b"")
    assert store.check_ledger("b") == []
    loaded = store.load("b")
    assert loaded.positions == state.positions and loaded.cash == state.cash
    ledger = store.ledger("b")
    assert (ledger["kind"] == FILL).sum() == n and ledger["client_order_id"].dropna().is_unique


def test_the_check_names_every_difference_between_the_stored_book_and_its_ledger(tmp_path):
    store = StateStore(tmp_path / "state.sqlite")
    store.create_book("b", 1000.0)
    state = store.load("b")
    entry = fill_entry(fill("b:1:AAA", "AAA", 3, 100.0, 1.0), T0, "cycle")
    state.holdings.apply(entry)
    state.last_cycle_time = T0
    store.commit_cycles(state, [record(T0, [entry])], b"")
    assert store.check_ledger("b") == []
    with sqlite3.connect(store.path) as conn:  # the stored state edited behind the ledger's back
        conn.execute("UPDATE book_positions SET quantity=4 WHERE book='b'")
        conn.execute("UPDATE book_state SET cash=cash+5 WHERE book='b'")
        conn.execute("INSERT INTO book_positions VALUES ('b', 'ZZZ', -1, 9.0)")
    assert store.check_ledger("b") == [
        "AAA: ledger +3 shares, stored state +4",
        "ZZZ: ledger +0 shares, stored state -1",
        "cash: ledger 699.00, stored state 704.00 (difference +5, tolerance 0)",
    ]


def test_the_ledger_is_append_only_and_books_a_fill_once(tmp_path):
    store = StateStore(tmp_path / "state.sqlite")
    store.create_book("b", 1000.0)
    state = store.load("b")
    entry = fill_entry(fill("b:1:AAA", "AAA", 3, 100.0), T0, "cycle")
    state.holdings.apply(entry)
    state.last_cycle_time = T0
    store.commit_cycles(state, [record(T0, [entry])], b"")
    with sqlite3.connect(store.path) as conn, pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE ledger SET quantity=30 WHERE book='b' AND kind='fill'")
    # the same fill again (another cycle's commit carrying it) is refused and nothing of that commit is written
    t1 = T0 + pd.Timedelta(minutes=5)
    state.holdings.apply(entry)
    state.last_cycle_time = t1
    with pytest.raises(StateError, match="a fill of these cycles is already in the ledger .*a fill is booked once"):
        store.commit_cycles(state, [record(t1, [entry])], b"")
    assert store.load("b").positions == {"AAA": (3, 100.0)} and len(store.cycles("b")) == 1
    assert store.check_ledger("b") == []


def test_differences_between_books_with_a_cash_tolerance():
    a = Holdings(100.0, {"AAA": (5, 10.0)})
    b = Holdings(100.004, {"AAA": (5, 10.5), "BBB": (1, 3.0)})
    assert differences(a, b, ("book", "broker"), cash_tolerance=0.01, compare_prices=False) == [
        "BBB: book +0 shares, broker +1"]
    assert differences(a, b, ("book", "broker")) == [
        "AAA: book average price 10.0, broker 10.5", "BBB: book +0 shares, broker +1",
        "cash: book 100.00, broker 100.00 (difference +0.004, tolerance 0)"]


def test_committing_a_cycle_twice_is_refused(tmp_path):
    store = StateStore(tmp_path / "state.sqlite")
    store.create_book("b", 1000.0)
    state = store.load("b")
    state.last_cycle_time = T0
    store.commit_cycles(state, [record(T0, [])], b"")
    with pytest.raises(StateError, match="already committed"):
        store.commit_cycles(state, [record(T0, [])], b"")

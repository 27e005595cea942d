"""PaperBroker: fills, fees, margin, partial fills, rejections, idempotency, persistence, marking.

Unless a test says otherwise: starting cash 100 000, slippage 5 bp (buys pay
ask * 1.0005, sells get bid * 0.9995), fee 1 bp of notional charged to cash,
fills up to 1.0 x displayed size, short margin 0.5 (cash >= 1.5 x shorts).
"""

from __future__ import annotations

import dataclasses
import math
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foxlive_core.brokers import Broker, OrderRequest, PaperBroker, SimulatedVenue
from foxlive_core.config import BrokerConfig
from foxlive_core.data.types import QuoteSnapshot
from foxlive_core.errors import BrokerError

T0 = datetime(2025, 1, 2, 15, 0, tzinfo=timezone.utc)
CONFIG = BrokerConfig(
    starting_cash=100000.0, slippage_bps=5.0, fee_bps=1.0, max_fill_fraction_of_displayed=1.0, short_margin=0.5
)
FREE = BrokerConfig(starting_cash=100000.0, slippage_bps=0.0, fee_bps=0.0, max_fill_fraction_of_displayed=1.0, short_margin=0.5)


def snapshot(**quotes: tuple[float, float, float, float]) -> QuoteSnapshot:
    """symbol=(bid, ask, bid_size, ask_size)."""
    bid, ask, bid_size, ask_size = (np.array(column, dtype=np.float64) for column in zip(*quotes.values()))
    times = np.full(len(quotes), np.datetime64("2025-01-02T15:00:00", "ns"))
    return QuoteSnapshot(tuple(quotes), bid, ask, bid_size, ask_size, times)


def order(order_id: str, symbol: str, side: str, quantity, at: datetime = T0) -> OrderRequest:
    return OrderRequest(order_id, symbol, side, quantity, at)


def broker_with(config: BrokerConfig = CONFIG, db_path=None, account_id: str = "paper", **quotes) -> PaperBroker:
    """A paper broker on a simulated venue showing ``quotes`` (post others with ``broker.venue.post``)."""
    broker = PaperBroker(config, db_path, account_id, venue=SimulatedVenue())
    broker.venue.post(snapshot(**(quotes or {"AAA": (99.98, 100.02, 5000.0, 5000.0)})))
    return broker


# ---------------------------------------------------------------- fills and fees


def test_buy_pays_ask_plus_slippage_and_fee_comes_out_of_cash():
    broker = broker_with()
    result = broker.submit_order(order("b1", "AAA", "buy", 10))
    fill = result.fill
    assert (result.status, result.filled_quantity, result.reject_reason) == ("filled", 10, "")
    assert fill.price == pytest.approx(100.07001, abs=1e-9)  # 100.02 * 1.0005
    assert fill.notional == pytest.approx(1000.7001, abs=1e-9)
    assert fill.fee == pytest.approx(0.10007001, abs=1e-12)  # 1 bp of notional
    account = broker.account()
    assert account.cash == pytest.approx(100000 - 1000.7001 - 0.10007001, abs=1e-9)  # 98999.19982999
    position = broker.positions()["AAA"]
    assert (position.quantity, position.avg_price) == (10, pytest.approx(100.07001))
    assert position.market_price == pytest.approx(100.0)  # mid of 99.98 / 100.02
    assert position.market_value == pytest.approx(1000.0)
    assert account.equity == pytest.approx(98999.19982999 + 1000.0, abs=1e-9)


def test_sell_to_close_gets_bid_minus_slippage_and_pays_a_second_fee():
    broker = broker_with()
    broker.submit_order(order("b1", "AAA", "buy", 10))
    held = broker.positions()["AAA"]
    sold = broker.submit_order(order("s1", "AAA", "sell", 10)).fill
    assert sold.price == pytest.approx(99.93001, abs=1e-9)  # 99.98 * 0.9995
    assert sold.fee == pytest.approx(0.09993001, abs=1e-12)
    # Round trip lost the spread 0.04 and slippage 0.1 per share, and two fees.
    assert broker.account().cash == pytest.approx(100000 - 10 * 0.14 - (0.10007001 + 0.09993001), abs=1e-9)
    assert broker.account().equity == pytest.approx(99998.39999998, abs=1e-9)
    assert broker.positions() == {}
    assert held.realized_pnl == 0.0


def test_short_sale_credits_notional_minus_fee():
    broker = broker_with()
    broker.submit_order(order("s1", "AAA", "sell", 100))
    account = broker.account()
    assert account.cash == pytest.approx(100000 + 9993.001 - 0.9993001, abs=1e-9)  # 109992.0016999
    position = broker.positions()["AAA"]
    assert (position.quantity, position.avg_price, position.market_value) == (
        -100, pytest.approx(99.93001), pytest.approx(-10000.0)
    )
    assert account.equity == pytest.approx(109992.0016999 - 10000.0, abs=1e-9)
    assert (account.gross_exposure, account.net_exposure) == (pytest.approx(10000.0), pytest.approx(-10000.0))


# ---------------------------------------------------------------- margin


def test_short_refused_when_cash_does_not_cover_margin():
    # Cash 10 000, sells at 40 * 0.9995 = 39.98. Shorting N needs
    # 10 000 + 0.9999 * 39.98 N >= 1.5 * 39.98 N, i.e. N <= 500.15.
    broker = broker_with(AAA=(40.0, 40.02, 5000.0, 5000.0))
    broker.reset(10000.0)
    with pytest.raises(BrokerError) as refused:
        broker.submit_order(order("s501", "AAA", "sell", 501))  # cash 30027.98 < required 30044.97
    assert refused.value.reason == "insufficient_cash"
    assert "30044.97" in str(refused.value) and "30027.98" in str(refused.value)
    assert broker.account().cash == 10000.0
    filled = broker.submit_order(order("s500", "AAA", "sell", 500))  # cash 29988.00 >= required 29985.00
    assert filled.filled_quantity == 500
    assert broker.account().cash == pytest.approx(29988.001, abs=1e-9)


def test_buy_may_not_spend_the_cash_that_backs_shorts_but_covering_is_always_allowed():
    broker = broker_with(AAA=(99.98, 100.02, 5000.0, 5000.0), BBB=(49.99, 50.01, 5000.0, 5000.0))
    broker.submit_order(order("s1", "AAA", "sell", 1000))
    cash = 100000 + 99930.01 - 9.993001  # 199920.016999; shorts at mid 100 need 150 000
    assert broker.account().cash == pytest.approx(cash, abs=1e-9)
    buy_cost = 50.01 * 1.0005 * 1.0001  # price plus fee per BBB share
    results = broker.submit_orders([order("b998", "BBB", "buy", 998), order("b997", "BBB", "buy", 997)])
    assert [r.reject_reason for r in results] == ["insufficient_cash", ""]  # 149980.09 < 150000 <= 150030.13
    assert broker.account().cash == pytest.approx(cash - 997 * buy_cost, abs=1e-6)

    # The AAA mid rises to 120: shorts need 180 000 > cash, so no new exposure, but covering still fills.
    broker.venue.post(snapshot(AAA=(119.98, 120.02, 5000.0, 5000.0), BBB=(49.99, 50.01, 5000.0, 5000.0)))
    assert broker.submit_orders([order("b1", "BBB", "buy", 1)])[0].reject_reason == "insufficient_cash"
    assert broker.submit_orders([order("s2", "AAA", "sell", 1)])[0].reject_reason == "insufficient_cash"
    cover = broker.submit_order(order("c1", "AAA", "buy", 400))
    assert cover.status == "filled"
    assert broker.positions()["AAA"].quantity == -600


def test_buy_without_shorts_may_not_borrow():
    broker = broker_with()
    # 1000 shares cost 100070.01 + fee 10.007 > 100 000.
    result = broker.submit_orders([order("b1", "AAA", "buy", 1000)])[0]
    assert (result.status, result.reject_reason, result.fill) == ("rejected", "insufficient_cash", None)
    assert broker.submit_orders([order("b2", "AAA", "buy", 999)])[0].status == "filled"  # 99980.05 total
    assert broker.account().cash == pytest.approx(100000 - 999 * 100.07001 * 1.0001, abs=1e-6)


# ---------------------------------------------------------------- partial fills


def test_order_larger_than_displayed_size_fills_the_displayed_size_and_cancels_the_rest():
    broker = broker_with(AAA=(99.98, 100.02, 40.0, 30.0))
    bought = broker.submit_order(order("b1", "AAA", "buy", 50))
    assert (bought.status, bought.requested_quantity, bought.filled_quantity, bought.fill.quantity) == (
        "partially_filled", 50, 30, 30,
    )
    assert "20 shares were cancelled" in bought.detail
    assert broker.account().cash == pytest.approx(100000 - 30 * 100.07001 * 1.0001, abs=1e-9)
    sold = broker.submit_order(order("s1", "AAA", "sell", 100))  # bid side shows 40
    assert (sold.status, sold.filled_quantity) == ("partially_filled", 40)
    assert broker.positions()["AAA"].quantity == -10


@pytest.mark.parametrize(("fraction", "ask_size", "expected"), [(0.5, 25.0, 12), (0.29, 100.0, 29), (2.0, 7.0, 14)])
def test_fillable_shares_are_the_floor_of_fraction_times_displayed(fraction, ask_size, expected):
    config = BrokerConfig(100000.0, 5.0, 1.0, fraction, 0.5)
    broker = broker_with(config, AAA=(99.98, 100.02, 100.0, ask_size))
    assert broker.submit_order(order("b1", "AAA", "buy", 50)).filled_quantity == expected


# ---------------------------------------------------------------- rejections


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (order("r1", "ZZZ", "buy", 10), "no_quote"),  # not in the snapshot
        (order("r2", "NAN", "buy", 10), "no_quote"),
        (order("r3", "NEG", "sell", 10), "no_quote"),
        (order("r4", "CROSS", "buy", 10), "no_quote"),
        (order("r5", "AAA", "hold", 10), "bad_side"),
        (order("r6", "AAA", "BUY", 10), "bad_side"),
        (order("r7", "AAA", "buy", 0), "zero_quantity"),
        (order("r8", "AAA", "sell", -5), "zero_quantity"),
        (order("r9", "AAA", "buy", 2.5), "zero_quantity"),
        (order("r10", "AAA", "buy", True), "zero_quantity"),
        (order("r11", "AAA", "buy", 100000), "insufficient_cash"),
        (order("r12", "THIN", "buy", 10), "no_liquidity"),  # ask size 0
        (order("r13", "THIN", "sell", 10), "no_liquidity"),  # bid size NaN
        (OrderRequest("r14", "AAA", "buy", 10, T0, "limit"), "unsupported_order_type"),
    ],
)
def test_each_rejection_reason_in_a_batch_and_as_an_exception(request_, reason):
    broker = broker_with(
        AAA=(99.98, 100.02, 5000.0, 5000.0),
        NAN=(np.nan, 10.0, 100.0, 100.0),
        NEG=(-1.0, 10.0, 100.0, 100.0),
        CROSS=(10.02, 10.0, 100.0, 100.0),
        THIN=(9.99, 10.01, np.nan, 0.0),
    )
    good = order("ok", "AAA", "buy", 10)
    results = broker.submit_orders([request_, good])
    assert (results[0].status, results[0].reject_reason, results[0].filled_quantity) == ("rejected", reason, 0)
    assert results[0].detail  # says what was wrong
    assert results[1].status == "filled"  # the batch went on
    assert broker.account().cash == pytest.approx(100000 - 10 * 100.07001 * 1.0001, abs=1e-9)
    with pytest.raises(BrokerError) as raised:
        broker.submit_order(dataclasses.replace(request_, client_order_id="again"))
    assert raised.value.reason == reason


def test_submit_order_raises_the_reject_reason():
    broker = broker_with()
    with pytest.raises(BrokerError) as raised:
        broker.submit_order(order("r1", "ZZZ", "buy", 10))
    assert raised.value.reason == "no_quote"
    assert "ZZZ has no usable quote (bid nan, ask nan; both must be finite and > 0) at the venue at 2025-01-02T15:00:00" in str(raised.value)


def test_requests_refuse_naive_times_and_bad_ids_and_convert_other_zones_to_utc():
    with pytest.raises(BrokerError) as naive:
        order("n1", "AAA", "buy", 1, datetime(2025, 1, 2, 15, 0))
    assert naive.value.reason == "naive_time"
    with pytest.raises(BrokerError) as no_id:
        order("", "AAA", "buy", 1)
    assert no_id.value.reason == "bad_client_order_id"
    with pytest.raises(BrokerError) as no_symbol:
        order("x", "", "buy", 1)
    assert no_symbol.value.reason == "bad_symbol"
    paris = timezone(timedelta(hours=1))
    assert order("z", "AAA", "buy", 1, datetime(2025, 1, 2, 16, 0, tzinfo=paris)).time == T0
    with pytest.raises(BrokerError) as naive_since:
        broker_with().fills_since(datetime(2025, 1, 2))
    assert naive_since.value.reason == "naive_time"


# ---------------------------------------------------------------- idempotency


def test_duplicate_client_order_id_returns_the_original_result_without_trading():
    broker = broker_with()
    first = broker.submit_order(order("dup", "AAA", "buy", 10))
    cash = broker.account().cash
    again = broker.submit_order(order("dup", "AAA", "buy", 10))
    different = broker.submit_orders([order("dup", "AAA", "sell", 99)])[0]
    assert again == first and different == first
    assert broker.account().cash == cash
    assert broker.positions()["AAA"].quantity == 10
    assert len(broker.fills_since(T0)) == 1
    assert broker.order("dup") == first
    assert broker.order("never") is None


def test_duplicate_inside_one_batch_trades_once_and_a_rejection_stays_rejected():
    broker = broker_with()
    results = broker.submit_orders([order("a", "AAA", "buy", 10), order("a", "AAA", "buy", 10)])
    assert results[0] == results[1]
    assert broker.positions()["AAA"].quantity == 10
    rejected = broker.submit_orders([order("r", "ZZZ", "buy", 1)])[0]
    broker.venue.post(snapshot(ZZZ=(9.99, 10.01, 100.0, 100.0), AAA=(99.98, 100.02, 5000.0, 5000.0)))
    assert broker.submit_orders([order("r", "ZZZ", "buy", 1)])[0] == rejected  # retry needs a new id


# ---------------------------------------------------------------- persistence


def test_a_new_broker_on_the_same_file_continues_where_the_last_stopped(tmp_path):
    path = tmp_path / "state.sqlite"
    quotes = {"AAA": (99.98, 100.02, 5000.0, 5000.0), "BBB": (49.99, 50.01, 5000.0, 5000.0)}
    first = broker_with(CONFIG, path, **quotes)
    placed = first.submit_orders([order("b1", "AAA", "buy", 10), order("s1", "BBB", "sell", 20, T0 + timedelta(minutes=5))])
    before = (first.account(), first.positions())
    first.close()

    second = broker_with(CONFIG, path, **quotes)
    assert (second.account(), second.positions()) == before
    assert second.account().cash == pytest.approx(100000 - 1000.7001 * 1.0001 + 20 * 49.965005 * 0.9999, abs=1e-9)
    assert second.order("s1") == placed[1]
    assert second.submit_orders([order("b1", "AAA", "buy", 10)])[0] == placed[0]  # not filled again
    assert second.positions()["AAA"].quantity == 10
    assert [f.client_order_id for f in second.fills_since(T0)] == ["b1", "s1"]
    assert [f.client_order_id for f in second.fills_since(T0 + timedelta(minutes=5))] == ["s1"]  # inclusive
    assert second.fills_since(T0)[0] == placed[0].fill
    second.submit_order(order("b2", "AAA", "buy", 5))
    second.close()

    third = PaperBroker(CONFIG, path)  # no quotes yet: marked at the last fill price
    assert third.positions()["AAA"].quantity == 15
    assert third.positions()["AAA"].market_price == pytest.approx(100.07001)
    third.close()


def test_accounts_in_one_file_are_separate_and_reset_clears_only_its_own(tmp_path):
    path = tmp_path / "state.sqlite"
    live = broker_with(CONFIG, path, account_id="live")
    replay = broker_with(CONFIG, path, account_id="replay")
    live.submit_order(order("x", "AAA", "buy", 10))
    replay.submit_order(order("x", "AAA", "sell", 10))  # same id, other account: trades
    assert (live.positions()["AAA"].quantity, replay.positions()["AAA"].quantity) == (10, -10)
    replay.reset(5000.0)
    assert replay.positions() == {} and replay.account().cash == 5000.0 and replay.order("x") is None
    assert live.positions()["AAA"].quantity == 10
    with pytest.raises(BrokerError) as bad:
        replay.reset(-1.0)
    assert bad.value.reason == "bad_starting_cash"


# ---------------------------------------------------------------- marking and average price


def test_marking_at_mid_and_equity_arithmetic():
    broker = broker_with(AAA=(99.98, 100.02, 5000.0, 5000.0), BBB=(49.99, 50.01, 5000.0, 5000.0))
    broker.submit_orders([order("b", "AAA", "buy", 10), order("s", "BBB", "sell", 100)])
    cash = 100000 - 1000.7001 * 1.0001 + 4996.5005 * 0.9999  # 103995.30046998
    broker.venue.post(snapshot(AAA=(109.98, 110.02, 5000.0, 5000.0), BBB=(44.99, 45.01, 5000.0, 5000.0)))
    account = broker.account()
    assert account.cash == pytest.approx(cash, abs=1e-9)
    assert account.positions_value == pytest.approx(10 * 110 - 100 * 45)  # -3400
    assert account.net_exposure == pytest.approx(-3400.0)
    assert account.gross_exposure == pytest.approx(1100 + 4500)
    assert account.equity == pytest.approx(cash - 3400.0, abs=1e-9)
    broker.venue.post(snapshot(AAA=(119.98, 120.02, 5000.0, 5000.0)))  # BBB unquoted keeps its last mid
    assert broker.positions()["BBB"].market_price == pytest.approx(45.0)
    assert broker.account().equity == pytest.approx(cash + 1200 - 4500, abs=1e-9)


def test_average_price_and_realized_pnl_through_adds_reductions_and_a_flip():
    broker = broker_with(FREE, AAA=(99.0, 100.0, 1000.0, 1000.0))
    broker.submit_order(order("1", "AAA", "buy", 10))  # 10 @ 100
    broker.venue.post(snapshot(AAA=(119.0, 120.0, 1000.0, 1000.0)))
    broker.submit_order(order("2", "AAA", "buy", 30))  # + 30 @ 120 -> avg (1000 + 3600) / 40 = 115
    assert broker.positions()["AAA"].avg_price == pytest.approx(115.0)
    broker.venue.post(snapshot(AAA=(130.0, 131.0, 1000.0, 1000.0)))
    broker.submit_order(order("3", "AAA", "sell", 20))  # realise (130 - 115) * 20 = 300, avg unchanged
    position = broker.positions()["AAA"]
    assert (position.quantity, position.avg_price, position.realized_pnl) == (20, pytest.approx(115.0), pytest.approx(300.0))
    broker.venue.post(snapshot(AAA=(90.0, 91.0, 1000.0, 1000.0)))
    broker.submit_order(order("4", "AAA", "sell", 40))  # close 20 at (90 - 115) * 20 = -500, open -20 @ 90
    position = broker.positions()["AAA"]
    assert (position.quantity, position.avg_price, position.realized_pnl) == (-20, pytest.approx(90.0), pytest.approx(-200.0))
    broker.venue.post(snapshot(AAA=(79.0, 80.0, 1000.0, 1000.0)))
    broker.submit_order(order("5", "AAA", "buy", 10))  # cover 10: (80 - 90) * 10 * -1 = +100
    position = broker.positions()["AAA"]
    assert (position.quantity, position.avg_price, position.realized_pnl) == (-10, pytest.approx(90.0), pytest.approx(-100.0))
    # Without costs, cash is starting cash plus the realised P&L once flat: 100000 - 100 + 10 * (90 - 80).
    broker.submit_order(order("6", "AAA", "buy", 10))
    assert broker.positions() == {}
    assert broker.account().cash == pytest.approx(100000.0)


# ---------------------------------------------------------------- interface and speed


def test_paper_broker_implements_the_broker_protocol():
    broker = broker_with()
    assert isinstance(broker, Broker)
    broker.submit_order(order("b1", "AAA", "buy", 1))
    assert broker.cancel_order("b1") is False  # IOC: nothing rests


def test_a_batch_of_500_orders_is_fast(tmp_path):
    symbols = [f"S{i:03d}" for i in range(500)]
    broker = PaperBroker(CONFIG, tmp_path / "state.sqlite", venue=SimulatedVenue())
    broker.venue.post(
        QuoteSnapshot(
            tuple(symbols),
            np.full(500, 19.99),
            np.full(500, 20.01),
            np.full(500, 1000.0),
            np.full(500, 1000.0),
            np.full(500, np.datetime64("2025-01-02T15:00:00", "ns")),
        )
    )
    requests = [order(f"o{i}", s, "buy" if i % 2 else "sell", 5) for i, s in enumerate(symbols)]
    started = time.perf_counter()
    results = broker.submit_orders(requests)
    elapsed = time.perf_counter() - started
    assert all(r.status == "filled" for r in results)
    assert len(broker.positions()) == 500
    assert elapsed < 0.5, f"500 orders took {elapsed * 1e3:.1f} ms"


# ---------------------------------------------------------------- accounting identity

SYMBOLS = ("AAA", "BBB", "CCC")
quote_steps = st.tuples(
    st.just("quote"),
    st.sampled_from(SYMBOLS),
    st.floats(10.0, 500.0),
    st.floats(1.0, 50.0),  # spread in bp
    st.sampled_from([0.0, 7.0, 300.0, 5000.0]),  # displayed size
    st.booleans(),  # False: a broken (NaN) quote
)
order_steps = st.tuples(st.just("order"), st.sampled_from(SYMBOLS), st.sampled_from(["buy", "sell"]), st.integers(1, 3000))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(quote_steps, order_steps), min_size=1, max_size=40))
def test_cash_plus_marked_positions_equals_start_plus_fill_edge_minus_fees(steps):
    books = {s: (99.98, 100.02, 5000.0, 5000.0) for s in SYMBOLS}
    marks = {s: 100.0 for s in SYMBOLS}
    broker = PaperBroker(CONFIG, venue=SimulatedVenue())
    broker.venue.post(snapshot(**books))
    fills = []
    for i, step in enumerate(steps):
        if step[0] == "quote":
            _, symbol, mid, spread_bps, size, valid = step
            half = 0.5 * mid * spread_bps * 1e-4
            books[symbol] = (mid - half, mid + half, size, size) if valid else (np.nan, np.nan, size, size)
            if valid:
                marks[symbol] = mid
            broker.venue.post(snapshot(**books))
            broker.account()  # the broker looks at its venue (it marks at the latest valid quote it has seen)
            continue
        _, symbol, side, quantity = step
        cash_before = broker.account().cash
        result = broker.submit_orders([order(f"o{i}", symbol, side, quantity)])[0]
        fill = result.fill
        if fill is None:
            assert broker.account().cash == cash_before
            continue
        fills.append(fill)
        signed = fill.quantity if side == "buy" else -fill.quantity
        assert fill.fee > 0 and fill.fee == pytest.approx(1e-4 * fill.notional, rel=1e-12)
        assert fill.notional == pytest.approx(fill.quantity * fill.price, rel=1e-12)
        assert broker.account().cash == pytest.approx(cash_before - signed * fill.price - fill.fee, rel=1e-12, abs=1e-9)

    account = broker.account()
    held = {s: p.quantity for s, p in broker.positions().items()}
    marked = sum(q * marks[s] for s, q in held.items())
    edge = math.fsum((marks[f.symbol] - f.price) * f.signed_quantity for f in fills)
    fees = math.fsum(f.fee for f in fills)
    assert account.cash + marked == pytest.approx(100000.0 + edge - fees, rel=1e-12, abs=1e-6)
    assert account.equity == pytest.approx(account.cash + marked, rel=1e-12, abs=1e-6)
    assert held == {s: q for s in SYMBOLS if (q := sum(f.signed_quantity for f in fills if f.symbol == s))}

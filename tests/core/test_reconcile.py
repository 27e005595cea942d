"""Reconciliation fails closed: the broker's positions and cash against the book at the start of every live cycle."""

from __future__ import annotations

import json

import numpy as np
import pytest

from foxlive_core.brokers import Account, PaperBroker, Position, SimulatedVenue
from foxlive_core.brokers.protocol import OrderRequest
from foxlive_core.cli import main
from foxlive_core.errors import BrokerError, StateError
from foxlive_core.portfolio import Holdings
from foxlive_core.reconcile import accept_broker_view, reconcile
from foxlive_core.state import ACTIVE, HALTED, StateStore
from tests.conftest import ACTIVE as ACTIVE_CONFIG
from tests.core.test_engine import DAY1, bar_times


class Reports:
    """A broker that only reports: the given positions (symbol -> (quantity, avg)) and cash, or raises."""

    def __init__(self, positions=None, cash=1000.0, fails: Exception | None = None) -> None:
        self._positions, self._cash, self._fails = positions or {}, cash, fails

    def positions(self):
        if self._fails is not None:
            raise self._fails
        return {s: Position(s, q, p, p, q * p) for s, (q, p) in self._positions.items()}

    def account(self):
        return Account(self._cash, self._cash, 0.0, 0.0, 0.0)


BOOK = Holdings(1000.0, {"AAA": (10, 50.0), "BBB": (-5, 20.0)})


def test_reconcile_lists_every_difference_beyond_the_tolerance():
    assert reconcile(BOOK, Reports({"AAA": (10, 51.0), "BBB": (-5, 20.0)}, 1000.004), 0.01) == []  # prices may differ
    assert reconcile(BOOK, Reports({"AAA": (12, 50.0), "CCC": (3, 7.0)}, 990.0), 0.01) == [
        "AAA: book +10 shares, broker +12",
        "BBB: book -5 shares, broker +0",  # a position the broker does not list is a difference
        "CCC: book +0 shares, broker +3",
        "cash: book 1,000.00, broker 990.00 (difference -10, tolerance 0.01)",
    ]


@pytest.mark.parametrize("broker, why", [
    (Reports(fails=BrokerError("timeout talking to the broker", "unreachable")), "BrokerError: timeout"),
    (Reports(fails=ConnectionResetError("connection reset")), "ConnectionResetError"),
    (Reports(cash=float("nan")), "account() reported cash nan"),
])
def test_a_broker_that_cannot_report_is_a_failure_never_a_flat_book(broker, why):
    with pytest.raises(BrokerError, match="did not report its positions and cash") as failed:
        reconcile(BOOK, broker, 0.01)
    assert why in str(failed.value) and "not evidence of a flat book" in str(failed.value)
    assert failed.value.reason == "no_report"


class Empty:
    def positions(self):
        return None

    def account(self):
        return Account(1.0, 1.0, 0.0, 0.0, 0.0)


def test_a_missing_positions_report_is_not_read_as_flat():
    with pytest.raises(BrokerError, match=r"positions\(\) returned NoneType"):
        reconcile(Holdings(1.0), Empty(), 0.01)


# ------------------------------------------------------------------ in the engine


@pytest.fixture
def trading_book(engine_home):
    """(engine, inputs, n): book 'live_rc' traded live through cycle n, so it holds positions."""
    engine = engine_home(ACTIVE_CONFIG)
    inputs = list(engine.batch_inputs(bar_times(engine, DAY1, 120)))
    engine.replay_inputs("probe", inputs)
    orders = np.flatnonzero(engine.store.cycles("probe")["n_orders"].to_numpy())
    engine.replay_inputs("live_rc", inputs[:orders[0]])  # flat until the first orders
    n = orders[2]
    for inp in inputs[orders[0]: n + 1]:
        engine.run_cycle("live_rc", inp.time, inp)
    assert engine.store.load("live_rc").positions
    return engine, inputs, n


def outside_fill(engine, book: str, symbol: str, quantity: int, at) -> None:
    """An order filled at the broker that no cycle of the book sent (someone trading the account by hand)."""
    venue = SimulatedVenue()
    venue.post(engine.market.quotes((symbol,), at))
    broker = PaperBroker(engine.cfg.broker, engine.store.path, account_id=book, venue=venue)
    broker.submit_order(OrderRequest("by-hand-1", symbol, "buy", quantity, at.to_pydatetime()))
    broker.close()


def test_a_difference_halts_the_book_before_any_order_and_names_it(trading_book):
    engine, inputs, n = trading_book
    symbol = sorted(engine.store.load("live_rc").positions)[0]
    held = engine.store.load("live_rc").positions[symbol][0]
    outside_fill(engine, "live_rc", symbol, 7, inputs[n].time)
    orders_before = len(engine.broker("live_rc").orders())
    result = engine.run_cycle("live_rc", inputs[n + 1].time, inputs[n + 1])
    assert result.trading_state == HALTED and result.orders == []
    assert f"{symbol}: book {held:+d} shares, broker {held + 7:+d}" in result.halt_reason
    assert "cash: book" in result.halt_reason
    assert len(engine.broker("live_rc").orders()) == orders_before  # nothing was sent
    halt = engine.store.events("live_rc").query("kind == 'halt'").iloc[-1]
    assert halt["actor"] == "reconciliation"
    assert f"{symbol}: book {held:+d} shares, broker {held + 7:+d}" in json.loads(halt["details"])["differences"]
    # still different next cycle: the halt stands (no second halt recorded), still nothing sent
    again = engine.run_cycle("live_rc", inputs[n + 2].time, inputs[n + 2])
    assert again.orders == [] and len(engine.store.events("live_rc").query("kind == 'halt'")) == 1


def test_a_broker_that_cannot_report_halts_the_book(trading_book, monkeypatch):
    engine, inputs, n = trading_book
    broker = engine.broker("live_rc")
    monkeypatch.setattr(broker, "positions", lambda: (_ for _ in ()).throw(BrokerError("503 from the broker", "down")))
    result = engine.run_cycle("live_rc", inputs[n + 1].time, inputs[n + 1])
    assert result.trading_state == HALTED and result.orders == []
    assert "did not report its positions and cash (BrokerError: 503 from the broker)" in result.halt_reason


def test_foxlive_reconcile_shows_and_accepts_the_brokers_view(trading_book, capsys, monkeypatch):
    engine, inputs, n = trading_book
    cfg = engine.cfg
    monkeypatch.setenv("FOXLIVE_HOME", str(cfg.home))
    run = lambda *args: main(["--config", cfg.source_path, "reconcile", "--book", "live_rc", *args])  # noqa: E731
    assert run() == 0 and "the broker agrees with the book" in capsys.readouterr().out
    symbol = sorted(engine.store.load("live_rc").positions)[0]
    held = engine.store.load("live_rc").positions[symbol][0]
    outside_fill(engine, "live_rc", symbol, 7, inputs[n].time)
    assert run() == 1
    out = capsys.readouterr().out
    assert f"{symbol}: book {held:+d} shares, broker {held + 7:+d}" in out and "--accept --operator" in out
    assert run("--accept") == 2 and "needs --operator and --reason" in capsys.readouterr().err
    engine.run_cycle("live_rc", inputs[n + 1].time, inputs[n + 1])  # the cycle halts the book
    assert run("--accept", "--operator", "alice", "--reason", "bought by hand at the broker") == 0
    out = capsys.readouterr().out
    assert "accepted the broker's view" in out and "stays halted" in out
    store = StateStore(cfg.state_path)
    assert store.load("live_rc").positions[symbol][0] == held + 7 and store.check_ledger("live_rc") == []
    adjustments = store.ledger("live_rc").query("source == 'reconcile'")
    assert len(adjustments) == 2 and set(adjustments["kind"]) == {"adjustment"}
    accepted = store.events("live_rc").query("kind == 'reconcile_accept'").iloc[0]
    assert (accepted["actor"], accepted["reason"]) == ("alice", "bought by hand at the broker")
    assert run() == 0
    # only an operator resumes it; then it trades again, agreeing with the broker
    assert store.trading_state("live_rc")[0] == HALTED
    store.resume("live_rc", "alice", "reconciled")
    result = engine.run_cycle("live_rc", inputs[n + 2].time, inputs[n + 2])
    assert result.trading_state == ACTIVE
    assert reconcile(store.load("live_rc").holdings, engine.broker("live_rc"), cfg.broker.reconcile_cash_tolerance) == []


def test_accepting_needs_an_operator_and_a_reason_and_a_report(tmp_path):
    store = StateStore(tmp_path / "state.sqlite")
    store.create_book("b", 1000.0)
    with pytest.raises(StateError, match="needs an operator and a reason"):
        accept_broker_view(store, "b", Reports(), "", "why", 0.01)
    with pytest.raises(BrokerError, match="did not report"):
        accept_broker_view(store, "b", Reports(fails=BrokerError("down", "down")), "alice", "why", 0.01)
    assert store.ledger("b")["kind"].tolist() == ["deposit"]
    found, entries = accept_broker_view(store, "b", Reports({"AAA": (4, 12.5)}, 950.0), "alice", "broker statement", 0.01)
    assert found == ["AAA: book +0 shares, broker +4", "cash: book 1,000.00, broker 950.00 (difference -50, tolerance 0.01)"]
    assert store.load("b").positions == {"AAA": (4, 12.5)} and store.load("b").cash == 950.0
    assert store.check_ledger("b") == []

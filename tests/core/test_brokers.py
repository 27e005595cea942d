"""The broker boundary: the engine uses nothing but the Broker protocol; adapters, venue and credentials."""

from __future__ import annotations

import dataclasses
import inspect
import pickle

import numpy as np
import pandas as pd
import pytest

from foxlive_core.brokers import BROKER_METHODS, Broker, PaperBroker, SimulatedVenue, open_broker
from foxlive_core.brokers._template import CREDENTIAL_VARIABLES, TemplateBroker
from foxlive_core.brokers.credentials import Secret, from_environment
from foxlive_core.config import BrokerConfig
from foxlive_core.data.types import QuoteSnapshot
from foxlive_core.engine import TradingEngine
from foxlive_core.errors import BrokerError, ConfigError
from tests.conftest import ACTIVE
from tests.core.test_engine import DAY1, bar_times

CONFIG = BrokerConfig(starting_cash=1000.0, slippage_bps=0.0, fee_bps=0.0, max_fill_fraction_of_displayed=1.0,
                      short_margin=0.5)


def protocol_methods() -> set[str]:
    return {name for name, _ in inspect.getmembers(Broker, inspect.isfunction) if not name.startswith("_")}


def test_the_template_lists_exactly_the_protocol_and_says_what_each_method_must_do(monkeypatch):
    assert protocol_methods() == set(BROKER_METHODS)
    template = {name for name, _ in inspect.getmembers(TemplateBroker, inspect.isfunction) if not name.startswith("_")}
    assert template == set(BROKER_METHODS)
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.setenv(name, f"value-of-{name}")
    broker = TemplateBroker(CONFIG, "live")
    assert isinstance(broker, Broker)
    arguments = {"submit_order": (None,), "submit_orders": ([],), "order": ("x",), "orders": (), "cancel_order": ("x",),
                 "positions": (), "account": (), "fills_since": (None,), "close": ()}
    for name in BROKER_METHODS:
        with pytest.raises(NotImplementedError, match=rf"^{name}: "):
            getattr(broker, name)(*arguments[name])


def test_the_paper_broker_implements_every_method_of_the_protocol():
    broker = PaperBroker(CONFIG)
    assert isinstance(broker, Broker)
    assert all(callable(getattr(broker, name)) for name in BROKER_METHODS)


def test_the_adapter_is_chosen_by_configuration(make_config, tmp_path):
    cfg = make_config()
    assert cfg.broker.kind == "paper"
    broker = open_broker(cfg.broker, "live", tmp_path / "state.sqlite")
    assert isinstance(broker, PaperBroker) and broker.account_id == "live"
    with pytest.raises(BrokerError, match=r"broker.kind 'alpaca' has no adapter; use one of \['paper'\]"):
        open_broker(dataclasses.replace(cfg.broker, kind="alpaca"), "live", tmp_path / "state.sqlite")
    with pytest.raises(ConfigError, match=r"broker.kind: 'alpaca' is not allowed; choose one of \['paper'\]"):
        make_config({"broker": {"kind": "alpaca"}})


def test_a_paper_broker_without_a_venue_reports_its_book_but_cannot_fill(tmp_path):
    broker = PaperBroker(CONFIG, tmp_path / "state.sqlite")
    assert broker.positions() == {} and broker.account().cash == 1000.0
    from tests.core.test_paper_broker import order

    with pytest.raises(BrokerError, match="has no venue to fill against"):
        broker.submit_orders([order("a", "AAA", "buy", 1)])


def test_a_simulated_venue_shows_what_was_posted_and_nothing_for_other_symbols():
    venue = SimulatedVenue()
    empty = venue.quotes(("AAA",), None)
    assert np.isnan(empty.bid).all() and (empty.ask_size == 0).all()
    t = np.datetime64("2025-05-01T14:00:00", "ns")
    venue.post(QuoteSnapshot(("AAA", "BBB"), np.array([9.0, 19.0]), np.array([11.0, 21.0]), np.array([100.0, 200.0]),
                             np.array([300.0, 400.0]), np.array([t, t])))
    shown = venue.quotes(("BBB", "ZZZ", "AAA"), pd.Timestamp("2030-01-01T00:00Z"))
    np.testing.assert_array_equal(shown.bid, [19.0, np.nan, 9.0])
    np.testing.assert_array_equal(shown.ask_size, [400.0, 0.0, 300.0])
    assert shown.time[0] == t and np.isnat(shown.time[1])


# ------------------------------------------------------------------ credentials


def test_credentials_come_from_the_environment_and_never_show(monkeypatch):
    secret_value = "sk-live-4f9c2e7d1a"
    monkeypatch.setenv("FOXLIVE_BROKER_SECRET_KEY", secret_value)
    monkeypatch.delenv("FOXLIVE_BROKER_KEY_ID", raising=False)
    with pytest.raises(BrokerError) as missing:
        from_environment("FOXLIVE_BROKER_KEY_ID", "FOXLIVE_BROKER_SECRET_KEY")
    assert "['FOXLIVE_BROKER_KEY_ID']" in str(missing.value) and secret_value not in str(missing.value)
    secret = from_environment("FOXLIVE_BROKER_SECRET_KEY")["FOXLIVE_BROKER_SECRET_KEY"]
    assert secret.reveal() == secret_value
    for shown in (repr(secret), str(secret), f"{secret}", repr({"key": secret}), repr(TemplateBrokerWith(secret))):
        assert secret_value not in shown and "FOXLIVE_BROKER_SECRET_KEY=***" in shown
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(secret)


@dataclasses.dataclass
class TemplateBrokerWith:
    credential: Secret


# ------------------------------------------------------------------ the engine sees the protocol only


class ProtocolOnly:
    """A broker that offers nothing but the Broker protocol's methods, and notes which the engine calls."""

    def __init__(self, inner) -> None:
        self._inner, self.calls = inner, []

    def __getattr__(self, name):
        if name not in BROKER_METHODS:
            raise AttributeError(f"{name} is not a method of the Broker protocol")
        self.calls.append(name)
        return getattr(self._inner, name)


def test_the_engine_trades_a_live_book_through_the_protocol_alone(engine_home):
    engine = engine_home(ACTIVE)
    times = bar_times(engine, DAY1, 60)
    inputs = list(engine.batch_inputs(times))
    engine.replay_inputs("probe", inputs)
    trading = np.flatnonzero(engine.store.cycles("probe")["n_orders"].to_numpy() > 0)
    assert trading.size > 0, "the fixture's cycles trade somewhere"
    first = max(int(trading[0]), 1)  # replayed up to the cycle before the first order; that one runs live
    engine.replay_inputs("strict", inputs[:first])
    brokers = {}

    def factory(book):
        brokers[book] = ProtocolOnly(open_broker(engine.cfg.broker, book, engine.store.path, engine.market))
        return brokers[book]

    engine = TradingEngine(engine.cfg, engine.market, engine.models, engine.store, symbols=engine.symbols,
                           broker_factory=factory)
    results = [engine.run_cycle("strict", inp.time, inp) for inp in inputs[first:]]
    assert sum(len(r.orders) for r in results) > 0
    assert set(brokers["strict"].calls) <= set(BROKER_METHODS) and "submit_orders" in brokers["strict"].calls
    fills = engine.store.ledger("strict").query("kind == 'fill'")
    assert len(fills) == sum(r.fill is not None for res in results for r in res.results)

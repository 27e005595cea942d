"""Trading states named as they behave: active, reducing (only risk-reducing orders), halted (no orders at all)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from foxlive_core.errors import StateError
from foxlive_core.state import ACTIVE, HALTED, REDUCING, CycleRecord, StateStore
from tests.conftest import ACTIVE as ACTIVE_CONFIG
from tests.core.test_engine import DAY1, bar_times

T0 = pd.Timestamp("2025-05-01T14:00Z")


def test_halts_only_get_stricter_and_only_resume_clears_them(tmp_path):
    store = StateStore(tmp_path / "state.sqlite")
    store.create_book("b", 1000.0)
    assert store.trading_state("b") == (ACTIVE, "")
    assert store.halt("b", "review the fills", "alice") is True
    assert store.trading_state("b") == (REDUCING, "review the fills")
    assert store.halt("b", "second opinion", "bob") is False  # a standing halt keeps its reason
    assert store.halt("b", "broker outage", "carol", mode="stop") is True  # reducing -> halted
    assert store.trading_state("b") == (HALTED, "broker outage")
    assert store.halt("b", "only reduce", "dave", mode="reducing") is False  # never less strict
    # a cycle tripping the kill switch changes nothing of a standing halt
    state = store.load("b")
    state.last_cycle_time = T0
    record = CycleRecord(cycle_time=T0, portfolio_value=1000.0, cash=1000.0, gross_exposure=0.0, net_exposure=0.0,
                         drawdown=0.0, daily_return=0.0, n_trade=0, n_hold=0, n_blocked=0, n_orders=0, n_fills=0,
                         fees=0.0, traded_notional=0.0, halted=True, summary={}, orders=[])
    assert store.commit_cycles(state, [record], b"", [("halt", "engine", "daily_loss_limit", {})]) == (HALTED, "broker outage")
    halts = store.events("b").query("kind == 'halt'")
    assert halts["actor"].tolist() == ["alice", "carol"]
    assert json.loads(halts["details"].iloc[1]) == {"trading_state": "halted", "previous_state": "reducing",
                                                    "previous_reason": "review the fills"}
    with pytest.raises(StateError, match="needs an operator and a reason"):
        store.resume("b", " ", "fixed")
    with pytest.raises(StateError, match="halt mode 'pause' is not one of"):
        store.halt("b", "x", "y", mode="pause")
    assert store.resume("b", "erin", "broker back, fills checked") is True
    assert store.trading_state("b") == (ACTIVE, "") and store.load("b").halted is False
    resumed = json.loads(store.events("b").query("kind == 'resume'")["details"].iloc[0])
    assert resumed == {"cleared_halt_reason": "broker outage", "cleared_state": "halted"}


def test_the_kill_switch_makes_a_book_reducing(engine_home):
    engine = engine_home({**ACTIVE_CONFIG, "risk": {"daily_loss_limit": 1e-9}})  # any loss at all trips it
    times = bar_times(engine, DAY1, 80)
    results = [engine.run_cycle("tripped", t) for t in times]
    tripped = next(r for r in results if r.halted)
    assert tripped.trading_state == REDUCING and tripped.halt_reason.startswith("daily_loss_limit")
    assert engine.store.trading_state("tripped")[0] == REDUCING
    assert engine.store.events("tripped").query("kind == 'halt'")["actor"].tolist() == ["engine"]


@pytest.fixture
def reducing_cycle(engine_home):
    """(engine, inputs, first, k): the book is flat before ``first``; at cycle ``k`` it reduces a position
    and (for the same book, free) may open others."""
    engine = engine_home(ACTIVE_CONFIG)
    times = bar_times(engine, DAY1, 234)
    inputs = list(engine.batch_inputs(times))
    engine.replay_inputs("probe", inputs)
    d = engine.store.decisions("probe")
    first = int(np.flatnonzero(engine.store.cycles("probe")["n_orders"].to_numpy())[0])
    reducing = d[(d["decision"] == "TRADE") & d["reason"].str.match(r"^(reduce|exit)_")]
    k = int(np.searchsorted(times, reducing["cycle_time"].iloc[0]))
    return engine, inputs, first, k


def test_reducing_sends_only_risk_reducing_orders_and_halted_sends_none(reducing_cycle):
    engine, inputs, first, k = reducing_cycle
    for book in ("free", "reducing", "stopped"):
        engine.replay_inputs(book, inputs[:first])  # flat: nothing differs between the three until now
        for inp in inputs[first:k]:
            engine.run_cycle(book, inp.time, inp)
    engine.store.halt("reducing", "only reduce", "pytest")
    engine.store.halt("stopped", "full stop", "pytest", mode="stop")
    held = engine.store.load("stopped").positions
    free, reducing, stopped = (engine.run_cycle(b, inputs[k].time, inputs[k]) for b in ("free", "reducing", "stopped"))
    traded = free.decision.shares != 0
    reduces = np.array([r.startswith(("reduce_", "exit_")) for r in free.decision.reason]) & traded
    assert reduces.any()
    # reducing: exactly the free book's risk-reducing orders, the others blocked by the kill switch
    np.testing.assert_array_equal(reducing.decision.shares, np.where(reduces, free.decision.shares, 0))
    assert set(reducing.decision.reason[traded & ~reduces]) <= {"kill_switch_active"}
    # halted: no order at all, every decided trade blocked as book_halted
    assert stopped.orders == [] and not stopped.decision.shares.any()
    assert set(stopped.decision.reason[traded]) == {"book_halted"}
    assert set(stopped.decision.decision[traded]) == {"BLOCKED"}
    assert (stopped.trading_state, reducing.trading_state, free.trading_state) == (HALTED, REDUCING, ACTIVE)
    assert engine.store.load("stopped").positions == held != engine.store.load("free").positions


def test_a_stop_set_while_a_cycle_decides_binds_all_its_orders(reducing_cycle):
    engine, inputs, first, k = reducing_cycle
    engine.replay_inputs("racing", inputs[:first])
    other = StateStore(engine.cfg.state_path)
    real_state = engine.store.trading_state

    def stop_arrives(book):
        other.halt(book, "operator full stop mid-cycle", "bob", mode="stop")
        return real_state(book)

    engine.store.trading_state = stop_arrives
    stopped = engine.run_cycle("racing", inputs[first].time, inputs[first])
    engine.store.trading_state = real_state
    assert stopped.orders == [] and stopped.trading_state == HALTED
    assert engine.store.orders("racing").empty and engine.store.load("racing").positions == {}

"""The engine: cycles for the whole universe, persisted state, halts, replay equal to live."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pandas as pd
import pytest

from foxlive_core.data.types import QuoteSnapshot
from foxlive_core.decide import align_buffers, empty_buffers
from foxlive_core.errors import DataError, StateError
from foxlive_core.state import StateStore
from tests.conftest import ACTIVE

DAY1 = pd.Timestamp("2025-05-01T00:00Z")


def bar_times(engine, start, n):
    return engine.market.calendar.bar_times(start, start + pd.Timedelta(days=10))[:n]


def _book_record(store, book: str) -> dict:
    """Everything a book's cycles left in the store, with the book's name taken out."""
    cycles = store.cycles(book).drop(columns=["book", "committed_at", "summary"]).reset_index(drop=True)
    orders = store.orders(book).drop(columns="book").reset_index(drop=True)
    orders["client_order_id"] = orders["client_order_id"].str.split(":", n=1).str[1]
    state = store.load(book)
    return {"cycles": cycles, "orders": orders, "decisions": store.decisions(book), "state": state}


def assert_same_books(store, a: str, b: str) -> None:
    ra, rb = _book_record(store, a), _book_record(store, b)
    pd.testing.assert_frame_equal(ra["cycles"], rb["cycles"], check_exact=True)
    pd.testing.assert_frame_equal(ra["orders"], rb["orders"], check_exact=True)
    pd.testing.assert_frame_equal(ra["decisions"], rb["decisions"], check_exact=True)
    sa, sb = ra["state"], rb["state"]
    assert sa.positions == sb.positions and sa.cash == sb.cash and sa.high_water_mark == sb.high_water_mark
    assert sa.arrays.keys() == sb.arrays.keys()
    for name in sa.arrays:
        np.testing.assert_array_equal(sa.arrays[name], sb.arrays[name], err_msg=name)


def test_a_replay_equals_run_cycle_called_once_per_cycle_bit_for_bit(engine_home):
    engine = engine_home(ACTIVE)
    times = bar_times(engine, DAY1, 234)  # three sessions, so the replay commits three chunks
    for t in times:
        engine.run_cycle("live_check", t)
    summary = engine.replay("replay", times[0], times[-1], chunk_sessions=2)
    assert summary.cycles == 234 and summary.commits == 3 and summary.orders > 0
    assert_same_books(engine.store, "live_check", "replay")
    orders = engine.store.orders("replay")
    assert {"buy", "sell"} == set(orders["side"])
    # The whole stage trace of any cycle, not only the last, reads back equal.
    for t in times[[0, 77, 78, 200, -1]]:
        a, b = engine.store.cycle_trace("live_check", t), engine.store.cycle_trace("replay", t)
        assert a.time == b.time == t
        assert a.decision.trace.keys() == b.decision.trace.keys()
        for name in a.decision.trace:
            np.testing.assert_array_equal(a.decision.trace[name], b.decision.trace[name], err_msg=name)


def test_an_interrupted_replay_stops_at_a_commit_and_resumes_to_the_same_book(engine_home):
    engine = engine_home(ACTIVE)
    times = bar_times(engine, DAY1, 234)
    engine.replay("whole", times[0], times[-1])
    seen = []

    def interrupt(result):
        seen.append(result.time)
        if len(seen) == 120:  # mid second session
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        engine.replay("cut", times[0], times[-1], on_cycle=interrupt)
    # Only the first session was committed: the store is at a chunk boundary.
    assert engine.store.load("cut").last_cycle_time == times[77]
    assert len(engine.store.cycles("cut")) == 78
    summary = engine.replay("cut", times[0], times[-1], resume=True)
    assert summary.resumed_after == times[77] and summary.cycles == 234 - 78
    assert_same_books(engine.store, "whole", "cut")
    assert engine.store.attribution("cut") == engine.store.attribution("whole")


def test_replay_trades_both_ways_and_not_only_holds(engine_home):
    engine = engine_home()
    times = bar_times(engine, DAY1, 156)  # two sessions
    engine.replay("replay", times[0], times[-1])
    decisions = engine.store.decisions("replay")
    assert len(decisions) == 156 * len(engine.symbols)
    reasons = set(decisions["reason"])
    assert {"enter_long", "enter_short"} <= reasons
    assert (decisions["decision"] == "TRADE").sum() > 20
    orders = engine.store.orders("replay")
    assert {"buy", "sell"} == set(orders["side"])
    assert (decisions["target_weight"] < 0).any() and (decisions["target_weight"] > 0).any()


def test_cycles_in_fresh_processes_continue_exactly(engine_home, tmp_path):
    engine = engine_home()
    times = bar_times(engine, DAY1 + pd.Timedelta(days=1), 4)
    for t in times:
        engine.run_cycle("inproc", t)
    # The same cycles, each in a new Python process on a copy of the state file's starting point.
    script = textwrap.dedent(
        f"""
        import sys, pandas as pd
        from foxlive_core.config import load_config
        from foxlive_core.runtime import open_engine
        cfg = load_config({str(engine.cfg.source_path)!r}, home={str(engine.cfg.home)!r})
        engine = open_engine(cfg, run_id={engine.info.run_id!r}, symbols={list(engine.symbols)!r})
        engine.run_cycle("multiproc", pd.Timestamp(sys.argv[1]))
        """
    )
    for t in times:
        subprocess.run([sys.executable, "-c", script, t.isoformat()], check=True, capture_output=True, timeout=300)
    store = StateStore(engine.cfg.state_path)
    a, b = store.cycles("inproc"), store.cycles("multiproc")
    cols = ["cycle_time", "portfolio_value", "cash", "n_trade", "n_orders", "fees", "gross_exposure"]
    pd.testing.assert_frame_equal(a[cols].reset_index(drop=True), b[cols].reset_index(drop=True))
    sa, sb = store.load("inproc"), store.load("multiproc")
    assert sa.positions == sb.positions and sa.cash == sb.cash
    for name in sa.arrays:
        np.testing.assert_array_equal(sa.arrays[name], sb.arrays[name])


def test_a_cycle_is_applied_once_and_runs_forward(engine_home):
    engine = engine_home()
    t0, t1 = bar_times(engine, DAY1, 2)
    engine.run_cycle("once", t1)
    with pytest.raises(StateError, match="already run"):
        engine.run_cycle("once", t1)
    with pytest.raises(StateError, match="not after the book's last cycle"):
        engine.run_cycle("once", t0)
    assert len(engine.store.cycles("once")) == 1


def test_cycles_of_one_book_never_overlap(engine_home):
    engine = engine_home()
    t = bar_times(engine, DAY1, 1)[0]
    engine.ensure_book("locked")
    other = StateStore(engine.cfg.state_path)
    other.acquire_lock("locked", "another-process")
    with pytest.raises(StateError, match="locked by another-process"):
        engine.run_cycle("locked", t)
    other.release_lock("locked", "another-process")
    engine.run_cycle("locked", t)


# The per-symbol time-series IC is noisy and makes the small test models trade often, which is
# what the tests of halting need: positions to reduce and orders to block.
BUSY = {"confidence": {"ic_mode": "time_series"}}


def test_halted_book_sends_only_risk_reducing_orders(engine_home):
    engine = engine_home(BUSY)
    times = bar_times(engine, DAY1, 60)
    for t in times[:30]:
        engine.run_cycle("halted", t)
    assert engine.store.load("halted").positions, "the book should hold positions before the halt"
    engine.store.halt("halted", "operator test", "pytest")
    blocked = 0
    for t in times[30:]:
        before = {s: q for s, (q, _) in engine.store.load("halted").positions.items()}
        res = engine.run_cycle("halted", t)
        for sym, q in zip(res.symbols, res.decision.shares):
            held = before.get(sym, 0)
            if q != 0:
                assert held != 0 and np.sign(q) == -np.sign(held) and abs(q) <= abs(held), (sym, held, q)
        blocked += int((res.decision.reason == "kill_switch_active").sum())
    assert blocked > 0
    assert engine.store.halt_status("halted") == (True, "operator test")


def test_kill_switch_trips_on_daily_loss_and_survives_midnight(engine_home):
    engine = engine_home({**BUSY, "risk": {"daily_loss_limit": 0.0001}})
    times = bar_times(engine, DAY1, 140)  # into the second session
    results = [engine.run_cycle("fragile", t) for t in times]
    halted_at = next(i for i, r in enumerate(results) if r.halted)
    assert "daily_loss_limit" in results[halted_at].halt_reason
    # Still halted in the next session: the reference cleared it at midnight, we do not.
    assert results[-1].halted and results[-1].time.date() > results[halted_at].time.date()
    events = engine.store.events("fragile")
    assert list(events["kind"]) == ["halt"] and events["actor"].iloc[0] == "engine"
    with pytest.raises(StateError, match="operator and a reason"):
        engine.store.resume("fragile", "", "")
    assert engine.store.resume("fragile", "alice", "loss reviewed")
    assert engine.store.halt_status("fragile") == (False, "")
    assert list(engine.store.events("fragile")["kind"]) == ["halt", "resume"]


class BrokenQuotes:
    """A market whose quotes are NaN for the first symbol and crossed for the second."""

    def __init__(self, market):
        self._m = market

    def __getattr__(self, name):
        return getattr(self._m, name)

    def quotes(self, symbols, at):
        q = self._m.quotes(symbols, at)
        bid, ask = q.bid.copy(), q.ask.copy()
        bid[0] = np.nan
        bid[1], ask[1] = ask[1] * 1.01, bid[1]
        return QuoteSnapshot(q.symbols, bid, ask, q.bid_size, q.ask_size, q.time)


def test_bad_quotes_block_their_symbols_and_the_cycle_goes_on(engine_home, small_run):
    engine = engine_home(market_override=BrokenQuotes(small_run[1]))
    res = engine.run_cycle("broken", bar_times(engine, DAY1, 1)[0])
    assert (res.decision.decision[0], res.decision.reason[0]) == ("BLOCKED", "invalid_quote")
    assert (res.decision.decision[1], res.decision.reason[1]) == ("BLOCKED", "crossed_quote")
    assert res.decision.shares[0] == res.decision.shares[1] == 0
    assert np.isfinite(res.portfolio_value)


def test_config_values_reach_the_engine(engine_home):
    engine = engine_home({"quote_gate": {"max_spread_bps": 0.01}})
    res = engine.run_cycle("tight", bar_times(engine, DAY1, 1)[0])
    assert set(res.decision.reason) == {"spread_too_wide"}


def test_replay_never_touches_the_live_book(engine_home):
    engine = engine_home()
    with pytest.raises(StateError, match="is the live book"):
        engine.replay(engine.cfg.book, DAY1, DAY1 + pd.Timedelta(days=1))


@pytest.mark.parametrize("mode, state", [("reducing", "reducing"), ("stop", "halted")])
def test_a_halted_replay_book_is_refused_until_resumed(engine_home, mode, state):
    """A replay restarts its book; on a halted book that would lift the halt, so it is refused, book untouched."""
    engine = engine_home()
    times = bar_times(engine, DAY1, 4)
    engine.replay("r", times[0], times[1])
    assert engine.store.halt("r", "operator stop", "alice", mode=mode)
    for resume in (False, True):
        with pytest.raises(StateError, match=f"replay book 'r' is {state} \\(operator stop\\).*foxlive resume --book r"):
            engine.replay("r", times[0], times[3], resume=resume)
    assert engine.store.trading_state("r") == (state, "operator stop")
    assert list(engine.store.cycles("r")["cycle_time"]) == list(times[:2])
    assert engine.store.resume("r", "alice", "reviewed")
    engine.replay("r", times[0], times[3])
    assert engine.store.trading_state("r") == ("active", "")
    assert len(engine.store.cycles("r")) == 4


def test_buffers_follow_the_universe(small_run):
    cfg = small_run[0]
    old = empty_buffers(cfg, 3, (1, 2), 3)
    old["z_buffer"][:, :, :, -1] = np.arange(3)[None, None, :]
    new = align_buffers(cfg, old, ("A", "B", "C"), ("C", "D", "A"), 3, (1, 2))
    assert new["z_buffer"][0, 0, 0, -1] == 2 and np.isnan(new["z_buffer"][0, 0, 1, -1]) and new["z_buffer"][0, 0, 2, -1] == 0


def test_realised_returns_feed_the_ic_every_cycle(engine_home):
    engine = engine_home()
    assert engine.cfg.confidence.ic_mode == "cross_sectional"
    times = bar_times(engine, DAY1, 30)
    results = [engine.run_cycle("ic", t) for t in times]
    hist = engine.store.load("ic").arrays["ic_cross_sectional"]  # (Fam, H, W): one measurement per cycle
    measured = np.isfinite(hist).sum(axis=-1)
    # The 5m horizon (1 bar) matured at 29 cycles, capped by the window of 20; 1d (78 bars) not yet.
    assert (measured[:, 0] == engine.cfg.confidence.ic_window).all() and (measured[:, -1] == 0).all()
    ic = results[-1].decision.trace["ic"]
    np.testing.assert_allclose(ic[:, 0, 0], np.nanmean(hist[:, 0], axis=-1))
    assert (ic[:, -1] == 0).all()
    # The newest measurement: Spearman across symbols of the previous cycle's 5m predictions
    # against the close-to-close returns of the last bar.
    from scipy.stats import spearmanr

    panel = engine.market.bars(engine.symbols, times[-2], times[-1])
    realised = panel.close[-1] / panel.close[-2] - 1
    previous = results[-2].decision.trace["raw_pred"][0, 0]
    ok = np.isfinite(realised) & np.isfinite(previous)
    assert hist[0, 0, -1] == pytest.approx(spearmanr(previous[ok], realised[ok]).statistic)


def test_time_series_ic_mode_pairs_each_symbol(engine_home):
    engine = engine_home({"confidence": {"ic_mode": "time_series"}})
    times = bar_times(engine, DAY1, 30)
    results = [engine.run_cycle("ic_ts", t) for t in times]
    state = engine.store.load("ic_ts")
    pairs = np.isfinite(state.arrays["ic_pred"]).sum(axis=-1)  # (Fam, H, N)
    assert (pairs[:, 0, :] == engine.cfg.confidence.ic_window).all()
    assert (pairs[:, -1, :] == 0).all()
    ic = results[-1].decision.trace["ic"]
    assert np.count_nonzero(ic[:, 0, :]) > 0.9 * ic[:, 0, :].size
    real = state.arrays["ic_real"][0, 0, 0, -1]
    close = engine.market.bars(engine.symbols[:1], times[-2], times[-1]).close[:, 0]
    assert real == pytest.approx(close[-1] / close[-2] - 1)


class _MendedMarket:
    """The engine's market, with the first ``k`` symbols' bars reported as repaired by the loader."""

    def __init__(self, market, k: int) -> None:
        self._market, self._k = market, k

    def __getattr__(self, name):
        return getattr(self._market, name)

    def repaired(self, symbols, start, end):
        rows = len(self._market.calendar.bar_times(start, end))
        mask = np.zeros((rows, len(symbols)), dtype=bool)
        mask[:, : self._k] = True
        return mask


def test_a_repaired_bar_never_opens_or_increases_a_position(engine_home):
    engine = engine_home(ACTIVE)
    times = bar_times(engine, DAY1, 78)
    engine.replay("clean", times[0], times[-1])
    clean = engine.store.decisions("clean")
    mended = list(engine.symbols[:10])
    traded_clean = clean[clean["symbol"].isin(mended) & (clean["decision"] == "TRADE")]
    assert len(traded_clean) > 0  # on clean bars these symbols trade
    engine.market = _MendedMarket(engine.market, 10)
    engine.replay("mended", times[0], times[-1])
    d = engine.store.decisions("mended")
    on_mended = d[d["symbol"].isin(mended)]
    assert (on_mended["decision"] != "TRADE").all()  # they start flat, so no trade can reduce: none at all
    assert (on_mended["reason"] == "repaired_bar").sum() > 0
    assert engine.store.orders("mended")["symbol"].isin(mended).sum() == 0
    # the rest of the universe still trades
    assert (d[~d["symbol"].isin(mended)]["decision"] == "TRADE").sum() > 0
    trace = engine.store.cycle_trace("mended", times[-1])
    assert set(trace.decision.trace["bar_repair"][:10]) == {"repaired"}


def test_risk_checks_let_a_mended_bar_only_reduce():
    from foxlive_core.pipeline.risk_checks import trade_risk_checks

    cur = np.array([0.0, 0.10, 0.10, -0.05, 0.10])
    tgt = np.array([0.05, 0.15, 0.02, 0.05, 0.15])
    repair = np.array(["filled", "repaired", "repaired", "filled", ""], dtype=object)
    res = trade_risk_checks(tgt, cur, 0.2, 1.0, False, repair)
    # the flip on a filled bar (-0.05 -> +0.05) keeps only its risk-reducing part: the short is closed
    assert res.allowed.tolist() == [False, False, True, True, True]
    assert res.reason.tolist() == ["filled_bar", "repaired_bar", "", "filled_bar", ""]
    np.testing.assert_array_equal(res.final_target, [0.0, 0.10, 0.02, 0.0, 0.15])


def test_a_decisions_trace_keeps_the_decision_and_explains_with_what_it_kept(engine_home):
    from foxlive_core.explain import render, trace_row

    full, lean = engine_home(ACTIVE), engine_home({**ACTIVE, "engine": {"trace": "decisions"}})
    times = bar_times(full, DAY1, 20)
    full.replay("full", times[0], times[-1])
    lean.replay("lean", times[0], times[-1])
    pd.testing.assert_frame_equal(full.store.decisions("full"), lean.store.decisions("lean"), check_exact=True)
    a, b = full.store.cycle_trace("full", times[-1]), lean.store.cycle_trace("lean", times[-1])
    assert "raw_pred" in a.decision.trace and "raw_pred" not in b.decision.trace
    sym = full.symbols[0]
    row_a, row_b = trace_row(a, sym), trace_row(b, sym)
    assert row_b["horizons"][0]["families"][full.info.families[0]]["raw"] is None
    assert row_b["horizons"][0]["alpha_bps"] == row_a["horizons"][0]["alpha_bps"]
    assert (row_a["decision"], row_a["reason"], row_a["sizing"]) == (row_b["decision"], row_b["reason"], row_b["sizing"])
    assert sym in render(row_b)


def test_a_replayed_session_is_kept_in_a_checksummed_file_beside_the_state(engine_home):
    engine = engine_home(ACTIVE)
    times = bar_times(engine, DAY1, 156)
    engine.replay("files", times[0], times[-1])
    files = sorted((engine.store.columns_dir / "files").glob("*.parquet"))
    assert [f.name for f in files] == ["20250501T133500Z.parquet", "20250502T133500Z.parquet"]
    assert len(engine.store.decisions("files")) == 156 * len(engine.symbols)
    # A damaged file is refused by name, never read as decisions.
    data = bytearray(files[1].read_bytes())
    data[len(data) // 2] ^= 0xFF
    files[1].write_bytes(bytes(data))
    with pytest.raises(StateError, match="do not match their checksum"):
        engine.store.decisions("files")
    assert engine.store.cycle_trace("files", times[10]) is not None  # the other session still reads
    engine.replay("files", times[0], times[-1])  # a fresh replay rebuilds it
    assert len(engine.store.decisions("files")) == 156 * len(engine.symbols)


def test_a_jump_beyond_the_limit_a_missing_bar_and_a_repaired_bar_are_each_named(engine_home):
    import dataclasses

    from foxlive_core.features import fill_missing_bars

    engine = engine_home()
    times = bar_times(engine, DAY1, 10)
    panel = engine.load_bars(times)
    close = panel.close.copy()
    rows = panel.times.get_indexer(times)
    close[rows[3]:, 0] *= 100.0  # a bad split adjustment from the 4th cycle on: one jump, then normal moves
    close[rows[5], 1] = np.nan  # a missing bar
    close[rows[6], 2] *= 2.0  # a doubled close: log 2 = 0.69, within the default limit of 1.0
    panel = dataclasses.replace(panel, close=close)
    filled = fill_missing_bars(panel, engine.cfg.market.max_fill_bars)
    flags = engine.bar_repairs(panel, filled, rows, times)
    assert flags[3, 0] == "jump" and (flags[4:, 0] == "").all() and (flags[:3, 0] == "").all()
    assert flags[5, 1] == "filled" and flags[6, 1] == ""
    assert (flags[:, 2] == "").all()
    assert (flags[:, 3:] == "").all()


def test_given_return_predictions_stand_in_for_the_models_which_are_not_run(engine_home):
    # The oracle replays pass their own predictions: the return models must not run for them (half of
    # an oracle replay's inference), and every other input must be what the models' own replay gets.
    engine = engine_home()
    times = engine.cycle_times("2025-05-01T13:35Z", "2025-05-02T20:00Z")
    own = list(engine.batch_inputs(times, chunk_sessions=1))
    H, Fam, C, N = len(engine.info.horizons), len(engine.info.families), len(times), len(engine.symbols)
    given = np.arange(H * Fam * C * N, dtype=np.float64).reshape(H, Fam, C, N)

    def refuse(X):
        raise AssertionError("the return models ran although their predictions were given")

    engine.models.predict = refuse
    stood_in = list(engine.batch_inputs(times, chunk_sessions=1, raw_pred=given))
    assert len(stood_in) == len(own) == C
    for c, (a, b) in enumerate(zip(own, stood_in)):
        np.testing.assert_array_equal(b.raw_pred, given[:, :, c, :].swapaxes(0, 1))  # (Fam, H, N)
        np.testing.assert_array_equal(b.barrier_prob.table(), a.barrier_prob.table())
        np.testing.assert_array_equal(b.close, a.close)
        assert b.time == a.time and b.session == a.session


def test_the_next_sessions_inputs_are_made_on_a_worker_while_this_sessions_cycles_run(engine_home):
    # Inference releases the GIL: made one chunk ahead on a worker thread it runs beside the decisions.
    engine = engine_home()
    times = engine.cycle_times("2025-05-01T13:35Z", "2025-05-05T20:00Z")  # Thu, Fri, Mon: 3 x 78 bars
    calls, second_made = [], threading.Event()
    real = engine.predict

    def predict(X):
        calls.append((threading.current_thread().name, X.shape[0]))
        if len(calls) == 2:
            second_made.set()
        if len(calls) == 3:
            raise DataError("the third session's bars are bad")
        return real(X)

    engine.predict = predict
    inputs = engine.batch_inputs(times, chunk_sessions=1)
    assert next(inputs).time == times[0]
    assert second_made.wait(30), "the second session's inputs were not made while the first's cycles ran"
    assert [size for _, size in calls] == [78, 78]
    assert all(name.startswith("foxlive-inputs") for name, _ in calls)
    assert [inp.time for inp in itertools.islice(inputs, 155)] == list(times[1:156])
    # The worker's error reaches the consumer at the chunk it spoils, and the worker is gone after it.
    with pytest.raises(DataError, match="third session"):
        next(inputs)
    assert not [t for t in threading.enumerate() if t.name.startswith("foxlive-inputs")]
    # A consumer that stops early leaves no worker behind either.
    engine.predict = real
    early = engine.batch_inputs(times, chunk_sessions=1)
    next(early)
    early.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("foxlive-inputs")]


@pytest.mark.parametrize("threadsafe", [False, True])
def test_bars_load_on_the_worker_only_from_a_threadsafe_source_and_their_errors_wait_their_turn(engine_home,
                                                                                                threadsafe):
    # A data source need not be thread-safe (an adapter may hold a connection of its own thread): unless
    # it says `bars_threadsafe`, only features and predictions go to the worker. Either way, bars that
    # fail for the third session fail when its first cycle is due, after the two sessions before it.
    engine = engine_home()
    times = engine.cycle_times("2025-05-01T13:35Z", "2025-05-05T20:00Z")
    market, asked = engine.market, []
    caller = threading.current_thread().name

    def recording(name):
        method = getattr(market, name)

        def call(*args, **kwargs):
            asked.append((name, threading.current_thread().name))
            if name == "bars" and pd.Timestamp(args[2]) >= times[156]:
                raise DataError("no bars for the third session")
            return method(*args, **kwargs)
        return call

    names = ("bars", "bars_ending_at", "quotes", "adv")
    for name in names:
        setattr(market, name, recording(name))
    market.bars_threadsafe = threadsafe
    try:
        inputs = engine.batch_inputs(times, chunk_sessions=1)
        assert [inp.time for inp in itertools.islice(inputs, 156)] == list(times[:156])
        with pytest.raises(DataError, match="third session"):
            next(inputs)
    finally:
        for name in (*names, "bars_threadsafe"):
            delattr(market, name)
    bars_threads = {thread for name, thread in asked if name == "bars"}
    assert len([1 for name, _ in asked if name == "bars"]) == 3
    assert bars_threads == ({"foxlive-inputs_0"} if threadsafe else {caller})
    assert {thread for name, thread in asked if name != "bars"} == {caller}


def test_live_cycles_store_buffer_deltas_that_read_back_bit_for_bit(engine_home, monkeypatch):
    # Between whole writes a live cycle stores only what it changed in the history buffers; a fresh
    # connection (another process) must read back exactly the buffers the engine holds, every cycle.
    # A history holding 4 deltas (the limit here) is written whole again, one history a cycle.
    import foxlive_core.state as state_module

    monkeypatch.setattr(state_module, "ARRAY_DELTA_LIMIT", 4)
    engine = engine_home(ACTIVE)
    histories = set(engine._histories)
    held_counts, delta_bytes = [], []
    whole_bytes = None
    for t in bar_times(engine, DAY1, 14):
        engine.run_cycle("live", t)
        held = engine.store.load("live").arrays
        fresh = StateStore(engine.cfg.state_path)
        try:
            back = fresh.load("live").arrays
            rows = fresh._conn.execute("SELECT name, seq, length(moved) + length(newest) FROM book_array_deltas "
                                       "WHERE book='live'").fetchall()
            whole_bytes = fresh._conn.execute("SELECT SUM(length(data)) FROM book_arrays WHERE book='live'").fetchone()[0]
        finally:
            fresh.close()
        assert back.keys() == held.keys()
        for name in held:
            assert back[name].tobytes() == held[name].tobytes() and back[name].shape == held[name].shape, name
        held_counts.append({name: sum(1 for n, _, _ in rows if n == name) for name in histories})
        newest = max((seq for _, seq, _ in rows), default=None)
        delta_bytes.append(sum(size for _, seq, size in rows if seq == newest))  # what this cycle wrote
    # The first commit writes whole (nothing stored before); then deltas. A history holding 4 (the most of
    # all; ties by name, largest first) is written whole again, one history a cycle, never more.
    assert set(held_counts[0].values()) == {0}
    rewrites = []
    for k in range(1, len(held_counts)):
        before, after = held_counts[k - 1], held_counts[k]
        rewritten = [n for n in histories if after[n] < before[n]]
        assert len(rewritten) <= 1
        if rewritten:
            (name,) = rewritten
            assert after[name] == 0 and before[name] >= 4
            assert name == max(histories, key=lambda n: (before[n], n))
            rewrites.append(k)
        assert all(after[n] - before[n] in (0, 1) for n in histories if n not in rewritten)
        assert max(after.values()) <= 4 + len(histories) - 1
    assert len(rewrites) >= 5
    assert len(histories) >= 8
    assert max(delta_bytes) < 0.1 * whole_bytes


def test_a_live_cycles_table_is_lz4_and_a_replayed_sessions_zstd(engine_home):
    import io

    import pyarrow.parquet as pq

    engine = engine_home(ACTIVE)
    times = bar_times(engine, DAY1, 80)
    engine.run_cycle("live", times[0])
    engine.replay("replay", times[1], times[-1])
    codecs = {}
    for book in ("live", "replay"):
        for data, path in engine.store._conn.execute("SELECT data, path FROM cycle_columns WHERE book=?", (book,)):
            blob = data if data is not None else (engine.store.columns_dir / path).read_bytes()
            meta = pq.ParquetFile(io.BytesIO(blob)).metadata
            codecs.setdefault(book, set()).update(meta.row_group(0).column(i).compression for i in range(meta.num_columns))
    assert codecs == {"live": {"LZ4"}, "replay": {"ZSTD"}}
    assert engine.store.decisions("live")["cycle_time"].nunique() == 1


def test_a_cycle_reads_the_buffers_another_process_committed_not_the_ones_it_kept(engine_home):
    # Each store keeps the buffers it last read or wrote, to spare a live cycle reading them back; a
    # commit by another connection (another process) must make it read them again. Two engines, two
    # connections to one database, take turns on one book: it must end as one engine running every cycle.
    from foxlive_core.engine import TradingEngine

    engine = engine_home(ACTIVE)
    other = TradingEngine(engine.cfg, engine.market, engine.models, StateStore(engine.cfg.state_path),
                          symbols=engine.symbols)
    times = bar_times(engine, DAY1, 12)
    for c, t in enumerate(times):
        engine.run_cycle("one", t)
        (engine if c % 3 else other).run_cycle("turns", t)  # cycles 0, 3, 6, 9 by the other connection
    assert_same_books(engine.store, "one", "turns")
    assert_same_books(other.store, "one", "turns")
    state = engine.store.load("turns")
    with pytest.raises(ValueError, match="read-only"):
        state.arrays["z_buffer"][...] = 0.0  # the kept buffers cannot be changed behind the store's back
    np.testing.assert_array_equal(engine.store.load("turns").arrays["z_buffer"], other.store.load("turns").arrays["z_buffer"])

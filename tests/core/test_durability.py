"""Safety of the book under concurrency and crashes: the sticky halt, dead-owner locks, resets under the lock.

Crash tests use real processes and real SIGKILL.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from foxlive_core.errors import StateError
from foxlive_core.state import StateStore
from tests.conftest import ACTIVE
from tests.core.test_engine import DAY1, bar_times


def _script(engine, body: str) -> str:
    """A Python program that opens ``engine``'s config and model run, then runs ``body``."""
    return textwrap.dedent(
        f"""
        import sys, time, pandas as pd
        from foxlive_core.config import load_config
        from foxlive_core.runtime import open_engine
        from foxlive_core.state import StateStore
        cfg = load_config({str(engine.cfg.source_path)!r}, home={str(engine.cfg.home)!r})
        """
    ) + textwrap.dedent(body).replace("ENGINE", f"open_engine(cfg, run_id={engine.info.run_id!r}, symbols={list(engine.symbols)!r})")


def _paper_orders(engine, book: str) -> int:
    with sqlite3.connect(engine.cfg.state_path) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='paper_orders'").fetchone():
            return 0  # no broker ever opened on this file
        return conn.execute("SELECT COUNT(*) FROM paper_orders WHERE account_id=?", (book,)).fetchone()[0]




# ------------------------------------------------------------------ the halt is sticky


def test_a_commit_from_stale_state_never_lifts_a_halt(engine_home, monkeypatch):
    engine = engine_home()
    t0, t1 = bar_times(engine, DAY1, 2)
    engine.run_cycle("sticky", t0)
    # `foxlive halt` from another process halts the book after the cycle below has loaded its state
    stale = engine.store.load("sticky")
    StateStore(engine.cfg.state_path).halt("sticky", "operator stop", "alice")
    monkeypatch.setattr(engine.store, "load", lambda book: stale)  # the cycle runs on the state loaded before the halt
    result = engine.run_cycle("sticky", t1)
    assert result.halted and result.halt_reason == "operator stop"
    state = StateStore(engine.cfg.state_path).load("sticky")
    assert (state.halted, state.halt_reason, state.halted_by) == (True, "operator stop", "alice")
    assert engine.store.cycles("sticky")["halted"].tolist() == [0, 1]


def test_a_halt_set_while_a_cycle_decides_binds_its_orders(engine_home):
    engine = engine_home(ACTIVE)
    times = bar_times(engine, DAY1, 60)
    free = [engine.run_cycle("free", t) for t in times]
    first = next(i for i, r in enumerate(free) if r.orders)  # the first cycle that opens positions
    # the same cycles on a second book, with a halt arriving between its decision and its orders
    for t in times[:first]:
        engine.run_cycle("racing", t)
    other = StateStore(engine.cfg.state_path)
    real_state = engine.store.trading_state

    def halt_arrives(book):
        other.halt(book, "operator stop mid-cycle", "bob")
        return real_state(book)

    engine.store.trading_state = halt_arrives
    racing = engine.run_cycle("racing", times[first])
    engine.store.trading_state = real_state
    # the book was flat: every order of the free run opened a position, so the halted run sends none
    assert racing.orders == [] and racing.halted
    assert set(racing.decision.reason[free[first].decision.shares != 0]) == {"kill_switch_active"}


def test_halts_set_at_random_moments_survive_every_commit(engine_home):
    engine = engine_home(ACTIVE)
    start = bar_times(engine, DAY1, 1)[0]
    engine.run_cycle("race", start)  # the book and its first cycle exist before the runner starts
    runner = subprocess.Popen(
        [sys.executable, "-c", _script(engine, """
            engine = ENGINE
            times = engine.market.calendar.bar_times(pd.Timestamp(sys.argv[1]), pd.Timestamp(sys.argv[1]) + pd.Timedelta(days=20))
            for t in times[1:400]:
                engine.run_cycle("race", t)
            """), start.isoformat()],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    store = StateStore(engine.cfg.state_path)
    rng = random.Random(5)
    trials = lost = 0
    try:
        while trials < 30 and runner.poll() is None:
            time.sleep(rng.uniform(0.0, 0.15))  # a random moment of the cycle in flight
            reason = f"trial {trials}"
            store.halt("race", reason, "pytest")
            seen = store.load("race").cycle_count
            deadline = time.monotonic() + 30
            while store.load("race").cycle_count < seen + 2 and time.monotonic() < deadline:
                time.sleep(0.01)  # two commits at least, one of them begun before the halt
            assert store.load("race").cycle_count >= seen + 2, "the runner stopped committing"
            halted, stored = store.halt_status("race")
            lost += not (halted and stored == reason)
            store.resume("race", "pytest", f"end of {reason}")
            trials += 1
    finally:
        runner.kill()
        runner.wait()
    print(f"halt race: {trials} trials, {lost} halts lost")
    assert trials >= 24, runner.stderr.read().decode()[-2000:]
    assert lost == 0


# ------------------------------------------------------------------ locks


def test_the_lock_of_a_killed_process_is_taken_over_at_once(engine_home):
    engine = engine_home()
    t = bar_times(engine, DAY1, 1)[0]
    engine.ensure_book("crashed")
    holder = subprocess.Popen(
        [sys.executable, "-c", _script(engine, """
            store = StateStore(cfg.state_path)
            with store.locked("crashed"):
                print("locked", flush=True)
                time.sleep(600)
            """)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert holder.stdout.readline().strip() == b"locked"
    # alive: a cycle of the book fails fast and sends nothing
    began = time.monotonic()
    with pytest.raises(StateError, match=rf"book 'crashed' is locked by .*:{holder.pid}:"):
        engine.run_cycle("crashed", t)
    assert time.monotonic() - began < 5
    assert _paper_orders(engine, "crashed") == 0
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    began = time.monotonic()
    engine.run_cycle("crashed", t)
    assert time.monotonic() - began < 30  # not the lock's 600 s expiry
    events = engine.store.events("crashed")
    takeover = events[events["kind"] == "lock_takeover"]
    assert len(takeover) == 1 and f":{holder.pid}:" in takeover["details"].iloc[0]
    assert takeover["reason"].iloc[0] == "the lock's owner process is gone"


def test_two_replays_of_one_book_in_one_process_do_not_share_a_lock(engine_home):
    engine = engine_home()
    with engine.store.locked("replay_x"):
        with pytest.raises(StateError, match="book 'replay_x' is locked by"):
            engine.store.acquire_lock("replay_x", "x")
        with pytest.raises(StateError, match="book 'replay_x' is locked by"):
            with engine.store.locked("replay_x"):
                pass


def test_a_replay_renews_its_lock_at_every_commit_and_stops_once_it_lost_it(engine_home):
    """A replay longer than the lock's lifetime keeps its lock (each session's commit renews it); one that
    let it expire and lost it to another host writes nothing more."""
    engine = engine_home()
    engine.lock_ttl_s = 1.0
    times = bar_times(engine, DAY1, 234)  # three sessions of 78 bars
    other = StateStore(engine.cfg.state_path)
    seen = {}
    began = time.monotonic()

    def on_cycle(result):
        i = times.get_loc(result.time)
        if i < 78:
            time.sleep(1.2 / 78)  # the first session takes longer than the lock's lifetime
        elif i == 78:  # the first session was committed just before this cycle
            seen["held_for"] = time.monotonic() - began
            with pytest.raises(StateError, match="book 'long' is locked by"):
                other.acquire_lock("long", "otherhost:1:intruder")
        elif i == 100:
            time.sleep(1.1)  # no commit for longer than the lifetime: the lock expires, another host takes it
            other.acquire_lock("long", "otherhost:1:intruder")

    with pytest.raises(StateError, match="no longer holds the book's lock \\(held by otherhost:1:intruder\\)"):
        engine.replay("long", times[0], times[-1], on_cycle=on_cycle)
    assert seen["held_for"] > engine.lock_ttl_s
    # The first session is the book; nothing of the second was written after the takeover.
    assert engine.store.load("long").last_cycle_time == times[77]
    assert list(engine.store.cycles("long")["cycle_time"]) == list(times[:78])
    takeover = engine.store.events("long")
    assert list(takeover["reason"][takeover["kind"] == "lock_takeover"]) == ["the lock expired"]


# ------------------------------------------------------------------ resets happen under the lock


def test_a_refused_replay_leaves_the_book_it_could_not_lock_untouched(engine_home):
    engine = engine_home()
    times = bar_times(engine, DAY1, 30)
    engine.replay("rp", times[0], times[-1])
    before = engine.store.cycles("rp")
    orders = engine.store.orders("rp")
    state = engine.store.load("rp")
    other = StateStore(engine.cfg.state_path)
    other.acquire_lock("rp", "otherhost:1:replay")
    with pytest.raises(StateError, match="book 'rp' is locked by otherhost:1:replay"):
        engine.replay("rp", times[0], times[-1])
    pd.testing.assert_frame_equal(engine.store.cycles("rp"), before)
    after = engine.store.load("rp")
    assert (after.cash, after.positions, after.cycle_count) == (state.cash, state.positions, state.cycle_count)
    pd.testing.assert_frame_equal(engine.store.orders("rp"), orders)


def test_two_replay_processes_on_one_book(engine_home):
    engine = engine_home(ACTIVE)
    times = bar_times(engine, DAY1, 156)  # two sessions
    script = _script(engine, """
        engine = ENGINE
        print("start", flush=True)
        try:
            # the first replay paces itself so that it still holds the lock while the second starts
            engine.replay("shared", pd.Timestamp(sys.argv[1]), pd.Timestamp(sys.argv[2]),
                          on_cycle=lambda result: time.sleep(float(sys.argv[3])))
        except Exception as exc:
            print("refused:", exc, flush=True)
            sys.exit(3)
        print("done", flush=True)
        """)
    first = subprocess.Popen([sys.executable, "-c", script, times[0].isoformat(), times[-1].isoformat(), "0.1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert first.stdout.readline().strip() == b"start"
    store = StateStore(engine.cfg.state_path)
    deadline = time.monotonic() + 120
    while not (store.exists("shared") and store.load("shared").cycle_count > 5) and time.monotonic() < deadline:
        time.sleep(0.05)  # the first replay holds the lock and has committed its first session
    second = subprocess.run([sys.executable, "-c", script, times[0].isoformat(), times[-1].isoformat(), "0"],
                            capture_output=True, timeout=300)
    assert second.returncode == 3 and b"book 'shared' is locked by" in second.stdout
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err.decode()[-2000:]
    state = store.load("shared")
    assert state.cycle_count == len(times)
    assert len(store.orders("shared")) == int(store.cycles("shared")["n_orders"].sum()) > 0

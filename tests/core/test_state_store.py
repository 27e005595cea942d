"""The state store's file: WAL with synchronous=FULL, a versioned schema, migrations in one transaction."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foxlive_core import state as state_module
from foxlive_core.errors import StateError
from foxlive_core.state import SCHEMA_VERSION, StateStore

# The schema of a state file written before commit 3c5219a (per-symbol decisions, the last cycle's trace).
SCHEMA_V0 = """
CREATE TABLE book_state (
    book TEXT PRIMARY KEY, created_at TEXT NOT NULL, cash REAL NOT NULL, high_water_mark REAL NOT NULL,
    start_of_day_value REAL NOT NULL, session_date TEXT, last_cycle_time TEXT, cycle_count INTEGER NOT NULL DEFAULT 0,
    halted INTEGER NOT NULL DEFAULT 0, halt_reason TEXT NOT NULL DEFAULT '', halted_at TEXT,
    halted_by TEXT NOT NULL DEFAULT '', symbols TEXT NOT NULL DEFAULT '[]', model_run_id TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL
);
CREATE TABLE book_positions (
    book TEXT NOT NULL, symbol TEXT NOT NULL, quantity INTEGER NOT NULL, avg_price REAL NOT NULL,
    PRIMARY KEY (book, symbol)
);
CREATE TABLE book_arrays (book TEXT NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (book, name));
CREATE TABLE cycles (
    book TEXT NOT NULL, cycle_time TEXT NOT NULL,
    portfolio_value REAL NOT NULL, cash REAL NOT NULL, gross_exposure REAL NOT NULL, net_exposure REAL NOT NULL,
    drawdown REAL NOT NULL, daily_return REAL NOT NULL,
    n_trade INTEGER NOT NULL, n_hold INTEGER NOT NULL, n_blocked INTEGER NOT NULL,
    n_orders INTEGER NOT NULL, n_fills INTEGER NOT NULL, fees REAL NOT NULL, traded_notional REAL NOT NULL,
    halted INTEGER NOT NULL, summary TEXT NOT NULL, committed_at TEXT NOT NULL,
    PRIMARY KEY (book, cycle_time)
);
CREATE TABLE decisions (
    book TEXT NOT NULL, cycle_time TEXT NOT NULL, symbol TEXT NOT NULL,
    decision TEXT NOT NULL, reason TEXT NOT NULL, horizon TEXT NOT NULL,
    alpha_bps REAL, score REAL, target_weight REAL, shares INTEGER NOT NULL,
    PRIMARY KEY (book, cycle_time, symbol)
);
CREATE TABLE orders (
    book TEXT NOT NULL, client_order_id TEXT NOT NULL, cycle_time TEXT NOT NULL, symbol TEXT NOT NULL,
    side TEXT NOT NULL, quantity INTEGER NOT NULL, filled_quantity INTEGER NOT NULL, status TEXT NOT NULL,
    price REAL, fee REAL NOT NULL, reject_reason TEXT NOT NULL,
    PRIMARY KEY (book, client_order_id)
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, book TEXT NOT NULL, time TEXT NOT NULL, kind TEXT NOT NULL,
    actor TEXT NOT NULL, reason TEXT NOT NULL, details TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE last_traces (book TEXT PRIMARY KEY, cycle_time TEXT NOT NULL, data BLOB NOT NULL);
CREATE TABLE attribution (book TEXT PRIMARY KEY, saved_at TEXT NOT NULL, report TEXT NOT NULL);
CREATE TABLE book_locks (book TEXT PRIMARY KEY, owner TEXT NOT NULL, acquired_at TEXT NOT NULL, expires_at TEXT NOT NULL);
"""
T = "2025-05-01T14:00:00+00:00"


def write_v0_file(path) -> None:
    """A v0 state file: book 'live' holding 10 AAA @ 101.5 and -4 BBB @ 55.25, halted by alice, 1 cycle."""
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA_V0)
        conn.execute(
            "INSERT INTO book_state (book, created_at, cash, high_water_mark, start_of_day_value, session_date, "
            "last_cycle_time, cycle_count, halted, halt_reason, halted_at, halted_by, symbols, model_run_id, updated_at) "
            "VALUES ('live', ?, 99200.5, 100000.0, 100000.0, '2025-05-01', ?, 1, 1, 'manual stop', ?, 'alice', "
            "'[\"AAA\", \"BBB\"]', 'run1', ?)",
            (T, T, T, T),
        )
        conn.executemany("INSERT INTO book_positions VALUES ('live', ?, ?, ?)", [("AAA", 10, 101.5), ("BBB", -4, 55.25)])
        conn.execute("INSERT INTO cycles VALUES ('live', ?, 99995.0, 99200.5, 0.01, 0.008, 0.0, 0.0, 1, 1, 0, 2, 2, 0.3, "
                     "1236.0, 1, '{}', ?)", (T, T))
        conn.execute("INSERT INTO decisions VALUES ('live', ?, 'AAA', 'TRADE', 'enter_long', '1d', 3.2, 1.1, 0.01, 10)", (T,))
        conn.execute("INSERT INTO last_traces VALUES ('live', ?, x'00')", (T,))


def test_the_store_runs_in_wal_mode_with_synchronous_full(tmp_path):
    store = StateStore(tmp_path / "state.sqlite")
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == store.schema_version


def test_a_v0_file_opens_migrated_with_its_old_tables_kept_as_v0(tmp_path):
    path = tmp_path / "old.sqlite"
    write_v0_file(path)
    store = StateStore(path)
    assert store.schema_version == SCHEMA_VERSION
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"decisions_v0", "last_traces_v0", "cycle_columns", "attribution_state"} <= tables
        assert not {"decisions", "last_traces"} & tables
        assert conn.execute("SELECT symbol, reason, shares FROM decisions_v0").fetchall() == [("AAA", "enter_long", 10)]
    state = store.load("live")
    assert (state.cash, state.cycle_count, state.halt_reason, state.halted_by) == (99200.5, 1, "manual stop", "alice")
    assert state.trading_state == "reducing"  # v0's halted flag meant: only risk-reducing orders
    assert store.check_ledger("live") == []  # the opening balance entered in the ledger folds to the book
    assert state.positions == {"AAA": (10, 101.5), "BBB": (-4, 55.25)}
    assert store.cycles("live")["n_orders"].tolist() == [2]
    assert store.decisions("live").empty  # the old per-symbol rows are not read as columnar decisions
    # opened again: nothing left to migrate, nothing changes
    again = StateStore(path)
    assert again.load("live").positions == state.positions


def test_a_failing_migration_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "old.sqlite"
    write_v0_file(path)

    def broken(conn):
        conn.execute("CREATE TABLE half_done (x)")
        raise sqlite3.OperationalError("disk I/O error (simulated)")

    monkeypatch.setattr(state_module, "MIGRATIONS", (*state_module.MIGRATIONS, (SCHEMA_VERSION + 1, "broken", broken)))
    monkeypatch.setattr(state_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StateError, match="is not a usable SQLite database .*simulated"):
        StateStore(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"decisions", "last_traces"} <= tables and not {"half_done", "decisions_v0", "cycle_columns"} & tables


def test_a_file_of_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.sqlite"
    StateStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    with pytest.raises(StateError, match=rf"schema version {SCHEMA_VERSION + 5}, newer than this foxlive's {SCHEMA_VERSION}"):
        StateStore(path)


def test_a_file_that_is_not_sqlite_is_a_clear_error(tmp_path):
    path = tmp_path / "state.sqlite"
    path.write_bytes(json.dumps({"not": "a database"}).encode() * 200)
    with pytest.raises(StateError, match="is not a usable SQLite database"):
        StateStore(path)


# ------------------------------------------------------------------ buffer deltas

def test_a_shift_delta_by_hand():
    old = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [np.nan, np.nan, 8.0]])
    new = np.array([[2.0, 3.0, 7.0], [4.0, 5.0, 6.0], [np.nan, 8.0, np.nan]])  # moved, stayed, moved in a NaN
    moved, newest = state_module.shift_delta(old, new, axis=-1)
    assert moved.tolist() == [True, False, True]
    np.testing.assert_array_equal(newest, [7.0, np.nan])
    np.testing.assert_array_equal(state_module.apply_shift_delta(old, -1, moved, newest), new)
    changed_inside = new.copy()
    changed_inside[1, 1] = 9.0  # a middle slot rewritten: not a shift
    assert state_module.shift_delta(old, changed_inside, axis=-1) is None
    assert state_module.shift_delta(old, new[:, :2], axis=-1) is None  # another shape
    assert state_module.shift_delta(old, -(-old), axis=-1) is not None  # same bits
    signed_zero = old.copy()
    signed_zero[0, 0] = 0.0
    assert state_module.shift_delta(signed_zero, np.where(signed_zero == 0, -0.0, signed_zero), axis=-1) is None


@settings(max_examples=150, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), data=st.data())
def test_a_shift_delta_rebuilds_any_shift_or_stay_change_bit_for_bit(shape, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    old = rng.choice([np.nan, -0.0, 0.0, 1.5, -2.25, np.inf], size=shape) if data.draw(st.booleans()) \
        else rng.normal(size=shape)
    view_old = np.moveaxis(old, axis, -1)
    moves = rng.random(view_old.shape[:-1]) < 0.5
    new = old.copy()
    view_new = np.moveaxis(new, axis, -1)
    shifted = np.concatenate([view_old[..., 1:], rng.choice([np.nan, 3.0, -0.0], size=view_old.shape[:-1])[..., None]],
                             axis=-1)
    view_new[moves] = shifted[moves]
    delta = state_module.shift_delta(old, new, axis)
    assert delta is not None
    rebuilt = state_module.apply_shift_delta(old, axis, *delta)
    assert rebuilt.tobytes() == new.tobytes() and rebuilt.shape == new.shape
    assert delta[1].size == delta[0].sum() <= moves.sum()

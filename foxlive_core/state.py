"""The state store: everything that carries across cycles, per book, in one SQLite file.

One file holds every book (``live``, ``replay``, ...). Per book it keeps the
ledger (every fill, deposit and adjustment, append-only; see
:mod:`foxlive_core.portfolio`) with its fold (cash, positions), the risk marks (high-water mark, start-of-day
value and its session), the halt flag with who/why/when, the signal
buffers of the pipeline (z-score buffers, IC pairs, calibration errors,
score histories, pending predictions) as numpy arrays, the completed cycles,
their compact decisions, the orders sent, an event log, and a lock so two
cycles of one book never overlap.

A live cycle is committed in **one transaction** (:meth:`StateStore.commit_cycles`
with one cycle), so a cycle run in a fresh process continues exactly where
the last one stopped, and a crash mid-cycle leaves the previous cycle's state
intact. A replay commits a chunk of cycles per transaction: it stops, is
interrupted or crashes only at a chunk boundary. Every symbol's decision and
stage trace is kept in columnar form, one Parquet table per committed chunk
(:mod:`foxlive_core.cycle_table`): inside the database for a small chunk (a
live cycle), as a file under ``<state file>.columns/<book>/`` for a large one
(a replayed session; written and synced before the transaction that
references it with its checksum). The buffers are stored as ``.npy`` blobs,
whole, and between two whole writes a live cycle stores only what it changed:
a history buffer whose rows each either stayed or moved one slot along with a
new newest value is saved as that row mask and those values
(:func:`shift_delta`), a few per cent of its bytes; the load applies the deltas
in order (:func:`apply_shift_delta`), bit for bit. A history holding
:data:`ARRAY_DELTA_LIMIT` deltas is written whole again, one history a commit,
so that the whole writes of a book's buffers fall on different cycles.

Durability: stdlib ``sqlite3`` in WAL mode with ``synchronous=FULL``, so a
committed cycle survives a power cut as well as a killed process. The schema
is versioned (``PRAGMA user_version``); :data:`MIGRATIONS` are applied in
order when a store is opened, all of them in one transaction, so a file is
always at one version or the next, never half way:

- v1, the schema before versioning. A file from before the columnar cycle
  tables (commit 3c5219a) keeps its per-symbol ``decisions`` and last-cycle
  ``last_traces`` tables, renamed ``decisions_v0`` and ``last_traces_v0``
  (nothing reads them; they are there to be looked at or dropped by hand).
- v2, the ledger. Each book's cash and positions of the time are entered as
  its opening balance (``adjustment`` entries, source ``migration``), so the
  fold of the ledger equals the book from the first cycle on.
- v3, order intents: what a live cycle is about to send, recorded before it
  sends it (:meth:`StateStore.record_intents`), so that a run after a crash
  asks the broker about every order of a cycle that was never committed
  (:meth:`StateStore.open_intents`, :meth:`StateStore.resolve_intents`).
- v4, trading states. The ``halted`` flag becomes ``trading_state``:
  ``active``; ``reducing`` (only risk-reducing orders: what ``halted`` meant,
  so a halted book becomes reducing); ``halted`` (no orders at all).
- v5, buffer deltas (``book_array_deltas``): what each live cycle changed in
  the history buffers since their last whole write.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import sqlite3
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from foxlive_core.cycle_table import decisions_frame, decisions_frame_columns, read_cycle
from foxlive_core.brokers.protocol import Fill, OrderRequest, OrderResult
from foxlive_core.errors import StateError
from foxlive_core.portfolio import ADJUSTMENT, DEPOSIT, FILL, Holdings, LedgerEntry, differences, fill_entry
from foxlive_core.sqlite import immediate_transaction, open_sqlite

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS book_state (
    book TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    cash REAL NOT NULL,
    high_water_mark REAL NOT NULL,
    start_of_day_value REAL NOT NULL,
    session_date TEXT,
    last_cycle_time TEXT,
    cycle_count INTEGER NOT NULL DEFAULT 0,
    halted INTEGER NOT NULL DEFAULT 0,
    halt_reason TEXT NOT NULL DEFAULT '',
    halted_at TEXT,
    halted_by TEXT NOT NULL DEFAULT '',
    symbols TEXT NOT NULL DEFAULT '[]',
    model_run_id TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS book_positions (
    book TEXT NOT NULL, symbol TEXT NOT NULL, quantity INTEGER NOT NULL, avg_price REAL NOT NULL,
    PRIMARY KEY (book, symbol)
);
CREATE TABLE IF NOT EXISTS book_arrays (
    book TEXT NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (book, name)
);
CREATE TABLE IF NOT EXISTS cycles (
    book TEXT NOT NULL, cycle_time TEXT NOT NULL,
    portfolio_value REAL NOT NULL, cash REAL NOT NULL, gross_exposure REAL NOT NULL, net_exposure REAL NOT NULL,
    drawdown REAL NOT NULL, daily_return REAL NOT NULL,
    n_trade INTEGER NOT NULL, n_hold INTEGER NOT NULL, n_blocked INTEGER NOT NULL,
    n_orders INTEGER NOT NULL, n_fills INTEGER NOT NULL, fees REAL NOT NULL, traded_notional REAL NOT NULL,
    halted INTEGER NOT NULL, summary TEXT NOT NULL, committed_at TEXT NOT NULL,
    PRIMARY KEY (book, cycle_time)
);
CREATE TABLE IF NOT EXISTS cycle_columns (
    book TEXT NOT NULL, first_cycle TEXT NOT NULL, last_cycle TEXT NOT NULL, n_cycles INTEGER NOT NULL,
    data BLOB, path TEXT, sha256 TEXT NOT NULL,
    PRIMARY KEY (book, first_cycle)
);
CREATE TABLE IF NOT EXISTS orders (
    book TEXT NOT NULL, client_order_id TEXT NOT NULL, cycle_time TEXT NOT NULL, symbol TEXT NOT NULL,
    side TEXT NOT NULL, quantity INTEGER NOT NULL, filled_quantity INTEGER NOT NULL, status TEXT NOT NULL,
    price REAL, fee REAL NOT NULL, reject_reason TEXT NOT NULL,
    PRIMARY KEY (book, client_order_id)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, book TEXT NOT NULL, time TEXT NOT NULL, kind TEXT NOT NULL,
    actor TEXT NOT NULL, reason TEXT NOT NULL, details TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS attribution (
    book TEXT PRIMARY KEY, saved_at TEXT NOT NULL, report TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attribution_state (
    book TEXT PRIMARY KEY, data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS book_locks (
    book TEXT PRIMARY KEY, owner TEXT NOT NULL, acquired_at TEXT NOT NULL, expires_at TEXT NOT NULL
);
"""


def _statements(script: str) -> list[str]:
    """The ``;``-separated statements of ``script`` (``executescript`` would commit the open transaction)."""
    return [part.strip() for part in script.split(";") if part.strip()]


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _v1_schema_before_versioning(conn: sqlite3.Connection) -> None:
    """Today's tables; a pre-3c5219a file's ``decisions`` and ``last_traces`` are kept as ``*_v0``."""
    tables = _tables(conn)
    for old in ("decisions", "last_traces"):
        if old in tables:
            conn.execute(f"ALTER TABLE {old} RENAME TO {old}_v0")
    for statement in _statements(SCHEMA_V1):
        conn.execute(statement)


LEDGER = """
CREATE TABLE ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    book TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('deposit', 'fill', 'adjustment')),
    time TEXT NOT NULL,
    source TEXT NOT NULL,
    cash REAL NOT NULL,
    symbol TEXT NOT NULL DEFAULT '',
    quantity INTEGER NOT NULL DEFAULT 0,
    price REAL NOT NULL DEFAULT 0.0,
    fee REAL NOT NULL DEFAULT 0.0,
    client_order_id TEXT,
    cycle_time TEXT,
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX ledger_by_book ON ledger (book, seq);
CREATE UNIQUE INDEX ledger_books_a_fill_once ON ledger (book, client_order_id) WHERE client_order_id IS NOT NULL
"""
LEDGER_COLUMNS = "kind, time, source, cash, symbol, quantity, price, fee, client_order_id, cycle_time, note"


def _v2_ledger(conn: sqlite3.Connection) -> None:
    """The append-only ledger; every existing book's cash and positions become its opening balance."""
    for statement in _statements(LEDGER):
        conn.execute(statement)
    conn.execute(
        "CREATE TRIGGER ledger_is_append_only BEFORE UPDATE ON ledger BEGIN "
        "SELECT RAISE(ABORT, 'the ledger is append-only: correct it with an adjustment entry'); END"
    )
    now = utcnow()
    for book, cash in conn.execute("SELECT book, cash FROM book_state ORDER BY book").fetchall():
        opening = [LedgerEntry(ADJUSTMENT, now, "migration", cash=cash, note="opening balance: the book before the ledger")]
        opening += [
            LedgerEntry(ADJUSTMENT, now, "migration", symbol=symbol, quantity=q, price=p, note="opening position")
            for symbol, q, p in conn.execute(
                "SELECT symbol, quantity, avg_price FROM book_positions WHERE book=? AND quantity != 0 ORDER BY symbol",
                (book,))
        ]
        insert_ledger_entries(conn, book, opening)


def insert_ledger_entries(conn: sqlite3.Connection, book: str, entries) -> None:
    """Append ``entries`` to ``book``'s ledger (inside the caller's transaction)."""
    conn.executemany(
        f"INSERT INTO ledger (book, {LEDGER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (book, e.kind, _iso(e.time), e.source, e.cash, e.symbol, e.quantity, e.price, e.fee,
             e.client_order_id or None, None if e.cycle_time is None else _iso(e.cycle_time), e.note)
            for e in entries
        ],
    )


def _entry_from_row(row) -> LedgerEntry:
    kind, time, source, cash, symbol, quantity, price, fee, order_id, cycle_time, note = row
    return LedgerEntry(kind, pd.Timestamp(time).to_pydatetime(), source, cash, symbol, int(quantity), price, fee,
                       order_id or "", None if cycle_time is None else pd.Timestamp(cycle_time), note)


INTENTS = """
CREATE TABLE intents (
    book TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    cycle_time TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    recorded_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    filled_quantity INTEGER NOT NULL DEFAULT 0,
    price REAL,
    fee REAL NOT NULL DEFAULT 0.0,
    reject_reason TEXT NOT NULL DEFAULT '',
    resolved_at TEXT,
    PRIMARY KEY (book, client_order_id)
);
CREATE INDEX intents_by_status ON intents (book, status, cycle_time)
"""
INTENT_COLUMNS = ("client_order_id, cycle_time, attempt, symbol, side, quantity, status, filled_quantity, price, fee, "
                  "reject_reason")
# An intent's status: 'open' until its cycle is committed ('committed') or a later run asked the broker about it:
# 'filled', 'partially_filled', 'rejected' (the broker's answer) or 'not_submitted' (the broker never saw it).
ANSWERED = ("filled", "partially_filled", "rejected")


def _v3_intents(conn: sqlite3.Connection) -> None:
    for statement in _statements(INTENTS):
        conn.execute(statement)


# A book's trading states, from free to stopped (see the module doc, v4).
ACTIVE, REDUCING, HALTED = "active", "reducing", "halted"
TRADING_STATES = (ACTIVE, REDUCING, HALTED)
HALT_MODES = {"reducing": REDUCING, "stop": HALTED}  # what an operator asks for -> the state it sets


def _v4_trading_states(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE book_state ADD COLUMN trading_state TEXT NOT NULL DEFAULT 'active' "
                 "CHECK (trading_state IN ('active', 'reducing', 'halted'))")
    conn.execute("UPDATE book_state SET trading_state='reducing' WHERE halted=1")
    conn.execute("ALTER TABLE book_state DROP COLUMN halted")


def _v5_array_deltas(conn: sqlite3.Connection) -> None:
    # seq: the book's cycle_count after the commit that wrote the delta (they apply in that order)
    conn.execute("CREATE TABLE book_array_deltas (book TEXT NOT NULL, seq INTEGER NOT NULL, name TEXT NOT NULL, "
                 "axis INTEGER NOT NULL, moved BLOB NOT NULL, newest BLOB NOT NULL, PRIMARY KEY (book, seq, name))")


# (version, what it changes, how), in order; a store is opened at the last version.
MIGRATIONS = (
    (1, "the schema before versioning; pre-3c5219a decisions and last_traces kept as *_v0", _v1_schema_before_versioning),
    (2, "the append-only ledger, seeded with each book's opening balance", _v2_ledger),
    (3, "order intents recorded before a live cycle sends its orders", _v3_intents),
    (4, "trading states active / reducing / halted instead of the halted flag", _v4_trading_states),
    (5, "history buffers saved as per-cycle deltas between whole writes", _v5_array_deltas),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


def migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Bring the file of ``conn`` to :data:`SCHEMA_VERSION` in one transaction; returns the version.

    A file at a newer version than this code knows is refused: opening it
    with an older foxlive could write rows its newer schema does not expect.
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return version
    with immediate_transaction(conn):
        # read again under the write lock: another process may have migrated the file meanwhile
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state store {path} has schema version {version}, newer than this foxlive's {SCHEMA_VERSION}; "
                "upgrade foxlive to open it"
            )
        for target, _, step in MIGRATIONS:
            if target > version:
                step(conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return SCHEMA_VERSION


def lock_owner(token: str) -> str:
    """``host:pid:token``: who holds a lock, precisely enough to tell whether it is still alive."""
    return f"{socket.gethostname()}:{os.getpid()}:{token}"


def owner_is_dead(owner: str) -> bool:
    """True when ``owner`` (``host:pid:...``) is a process of this host that no longer runs (or is a zombie)."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        # /proc/<pid>/stat: "pid (comm) state ..."; comm may hold spaces, so read after the last ')'.
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state == "Z"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _iso(t) -> str:
    return pd.Timestamp(t).tz_convert("UTC").isoformat()


def array_to_blob(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def blob_to_array(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)


def _read_only(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


# Deltas a history buffer keeps before it is written whole again (one buffer a commit): a live cycle
# then writes about 1/ARRAY_DELTA_LIMIT of the whole buffers on average, and a load applies about this
# many per buffer (at most this plus the number of history buffers less one).
ARRAY_DELTA_LIMIT = 32


def shift_delta(old: np.ndarray, new: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray] | None:
    """What turned the history buffer ``old`` into ``new``, if each row either stayed or moved one slot.

    A row is the 1-d slice along ``axis`` (oldest slot first) at one index of the other axes.
    Returns ``(moved, newest)``: ``moved`` (rows,) bool, in the order of ``old``'s other axes
    with ``axis`` taken out, and ``newest`` (moved.sum(),) the value each moved row took in
    its newest slot; :func:`apply_shift_delta` rebuilds ``new`` from ``old`` with them, bit for
    bit. None when ``new`` is not such a change of ``old`` (other shape or dtype, a row changed
    in any other way): the caller writes ``new`` whole. Equality is of the bits, so NaN slots
    compare equal and -0.0 differs from 0.0.
    """
    if old.shape != new.shape or old.dtype != new.dtype or old.ndim == 0 or old.shape[axis] < 1:
        return None
    bits = np.dtype(f"u{old.dtype.itemsize}")
    o, n = old.view(bits), new.view(bits)
    axis %= old.ndim
    rows = old.size // old.shape[axis]

    def along(part):
        return tuple(part if d == axis else slice(None) for d in range(old.ndim))

    def rows_all(equal: np.ndarray) -> np.ndarray:
        # Reducing a middle axis in place is 3x slower than moving the (byte-sized) booleans last first.
        return np.ascontiguousarray(np.moveaxis(equal, axis, -1)).reshape(rows, equal.shape[axis]).all(axis=1)

    same = rows_all(o == n)
    moved = rows_all(o[along(slice(1, None))] == n[along(slice(None, -1))]) & ~same  # equal both ways: stays
    if not (same | moved).all():
        return None
    return moved, np.moveaxis(new, axis, -1)[..., -1].reshape(-1)[moved]


def _buffer_deltas(arrays: dict[str, np.ndarray], stored: dict[str, np.ndarray] | None,
                   histories: dict[str, int]) -> dict[str, tuple[int, np.ndarray, np.ndarray]] | None:
    """{name: (axis, moved, newest)} of the history buffers that changed since ``stored`` (the buffers as
    stored), or None when they must be written whole: nothing known of what is stored, another set of
    buffers, or a history that did not change by a shift (:func:`shift_delta`)."""
    if not histories or stored is None or stored.keys() != arrays.keys():
        return None
    out = {}
    for name, axis in histories.items():
        if name not in arrays or arrays[name] is stored[name]:
            continue
        delta = shift_delta(stored[name], arrays[name], axis)
        if delta is None:
            return None
        if delta[0].any():
            out[name] = (axis, *delta)
    return out


def apply_shift_delta(old: np.ndarray, axis: int, moved: np.ndarray, newest: np.ndarray) -> np.ndarray:
    """``old`` with each ``moved`` row shifted one slot towards the oldest and ``newest`` put last (see :func:`shift_delta`)."""
    out = np.array(old, copy=True)
    view = np.moveaxis(out, axis, -1)
    flat = moved.reshape(view.shape[:-1])
    rows = view[flat]
    rows[:, :-1] = rows[:, 1:]
    rows[:, -1] = newest
    view[flat] = rows
    return out


@dataclass(frozen=True)
class Intent:
    """An order a live cycle recorded before sending it, and what became of it (see ``INTENTS``).

    ``attempt`` counts the runs of the cycle at ``cycle_time`` (a cycle whose
    run crashed runs again); ``filled_quantity``, ``price``, ``fee`` and
    ``reject_reason`` are the broker's answer once it is known.
    """

    client_order_id: str
    cycle_time: pd.Timestamp
    attempt: int
    symbol: str
    side: str
    quantity: int
    status: str
    filled_quantity: int = 0
    price: float | None = None
    fee: float = 0.0
    reject_reason: str = ""

    @property
    def signed_filled(self) -> int:
        return self.filled_quantity if self.side == "buy" else -self.filled_quantity

    def request(self) -> OrderRequest:
        return OrderRequest(self.client_order_id, self.symbol, self.side, self.quantity, self.cycle_time.to_pydatetime())

    def result(self) -> OrderResult:
        """The broker's answer as an OrderResult (an answered intent only)."""
        fill = None
        if self.filled_quantity:
            fill = Fill(self.client_order_id, self.symbol, self.side, self.filled_quantity, self.price, self.fee,
                        self.filled_quantity * self.price, self.cycle_time.to_pydatetime())
        return OrderResult(self.client_order_id, self.symbol, self.side, self.quantity, self.filled_quantity,
                           self.status, self.reject_reason, fill)


def _intent_from_row(row) -> Intent:
    order_id, cycle_time, attempt, symbol, side, quantity, status, filled, price, fee, reason = row
    return Intent(order_id, pd.Timestamp(cycle_time), int(attempt), symbol, side, int(quantity), status, int(filled),
                  price, fee, reason)


@dataclass
class BookState:
    """A book's state as loaded at the start of a cycle (and written back at its end).

    ``holdings`` are the book's cash and positions (the fold of its ledger);
    ``arrays`` holds the pipeline's buffers keyed by name; their symbol axis
    follows ``symbols`` (see :func:`foxlive_core.decide.align_buffers`). As
    :meth:`StateStore.load` returns them they are read-only (the pipeline
    makes new buffers; the store keeps these to spare the next load).
    """

    book: str
    holdings: Holdings
    high_water_mark: float
    start_of_day_value: float
    session_date: str | None
    last_cycle_time: pd.Timestamp | None
    cycle_count: int
    trading_state: str
    halt_reason: str
    halted_at: str | None
    halted_by: str
    symbols: tuple[str, ...]
    model_run_id: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def cash(self) -> float:
        return self.holdings.cash

    @property
    def halted(self) -> bool:
        """Whether the book is not active (reducing or halted)."""
        return self.trading_state != ACTIVE

    @property
    def positions(self) -> dict[str, tuple[int, float]]:
        """Open positions: symbol -> (signed quantity, average price)."""
        return self.holdings.positions


@dataclass(frozen=True)
class CycleRecord:
    """The row :meth:`StateStore.commit_cycles` writes for one completed cycle (its decisions go columnar)."""

    cycle_time: pd.Timestamp
    portfolio_value: float
    cash: float
    gross_exposure: float
    net_exposure: float
    drawdown: float
    daily_return: float
    n_trade: int
    n_hold: int
    n_blocked: int
    n_orders: int
    n_fills: int
    fees: float
    traded_notional: float
    halted: bool  # whether the book ended the cycle not active, as the engine saw it
    summary: dict
    orders: list[tuple]  # (client_order_id, symbol, side, quantity, filled, status, price, fee, reject_reason)
    ledger: tuple[LedgerEntry, ...] = ()  # the cycle's fills not yet in the ledger, in the order they were booked


#: A chunk's Parquet table larger than this goes to a file beside the database instead of a blob in it
#: (SQLite writes a blob twice, WAL then database; a session of 500 symbols is ~30 MB).
INLINE_COLUMNS_BYTES = 1 << 20
# A book lock's lifetime, renewed by every commit of its holder (commit_cycles' ``lock``): it bounds how long
# a crashed process of another host blocks the book, never how long a live run may hold it.
LOCK_TTL_S = 600.0


class StateStore:
    """SQLite-backed state of every book. Safe to open from several processes."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.columns_dir = self.path.with_name(self.path.name + ".columns")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # FULL: a commit is on disk before it returns, so a power cut never loses a cycle whose orders
            # went out. A cycle writes a few MB of buffers: checkpoint the WAL every ~40 MB, not every 4 MB.
            self._conn = open_sqlite(self.path, synchronous="FULL", wal_autocheckpoint_pages=10000)
            self.schema_version = migrate(self._conn, self.path)
        except sqlite3.DatabaseError as exc:
            raise StateError(f"state store {self.path} is not a usable SQLite database ({exc}); move it aside and start a new book") from exc
        # book -> (PRAGMA data_version, read-only arrays): each book's buffers as this connection last read or
        # wrote them. SQLite changes data_version whenever another connection commits, so an unchanged
        # version means the stored buffers are these, and a live cycle need not read megabytes back.
        self._arrays_cache: dict[str, tuple[int, dict[str, np.ndarray]]] = {}

    def close(self) -> None:
        self._conn.close()

    def transaction(self):
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any error)."""
        return immediate_transaction(self._conn)

    @contextmanager
    def _snapshot(self):
        """A read transaction, so that what the block reads is one committed state (within a transaction: it)."""
        if self._conn.in_transaction:
            yield
            return
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.execute("COMMIT")

    def _data_version(self) -> int:
        return self._conn.execute("PRAGMA data_version").fetchone()[0]

    # ------------------------------------------------------------------ books

    def books(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT book FROM book_state ORDER BY book")]

    def exists(self, book: str) -> bool:
        return self._conn.execute("SELECT 1 FROM book_state WHERE book=?", (book,)).fetchone() is not None

    def create_book(self, book: str, starting_cash: float) -> None:
        """Create ``book`` with ``starting_cash`` if it does not exist (idempotent)."""
        now = utcnow()
        with self.transaction() as c:
            created = c.execute(
                "INSERT OR IGNORE INTO book_state (book, created_at, cash, high_water_mark, start_of_day_value, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (book, now.isoformat(), starting_cash, starting_cash, starting_cash, now.isoformat()),
            ).rowcount
            if created:
                insert_ledger_entries(c, book, [LedgerEntry(DEPOSIT, now, "book", cash=float(starting_cash),
                                                            note="starting cash")])

    def delete_book(self, book: str) -> None:
        """Remove every row of ``book`` (replay books are rebuilt from scratch)."""
        with self.transaction() as c:
            # The book's lock stays: a book is reset by the holder of its lock, under it.
            for table in ("book_state", "book_positions", "book_arrays", "book_array_deltas", "cycles", "cycle_columns",
                          "orders", "events", "attribution", "attribution_state", "ledger", "intents"):
                c.execute(f"DELETE FROM {table} WHERE book=?", (book,))
        self._arrays_cache.pop(book, None)
        # After the commit: a crash in between leaves files no row references, which the next chunk overwrites.
        shutil.rmtree(self._book_columns_dir(book), ignore_errors=True)

    def load(self, book: str) -> BookState:
        with self._snapshot():
            row = self._conn.execute(
                "SELECT cash, high_water_mark, start_of_day_value, session_date, last_cycle_time, cycle_count, "
                "trading_state, halt_reason, halted_at, halted_by, symbols, model_run_id FROM book_state WHERE book=?",
                (book,),
            ).fetchone()
            if row is None:
                raise StateError(f"book {book!r} does not exist in {self.path}; known books: {self.books()}")
            positions = {
                s: (int(q), float(p))
                for s, q, p in self._conn.execute("SELECT symbol, quantity, avg_price FROM book_positions WHERE book=?",
                                                  (book,))
            }
            version = self._data_version()
            cached = self._arrays_cache.get(book)
            if cached is None or cached[0] != version:
                cached = self._arrays_cache[book] = (version, {n: _read_only(a) for n, a in self._read_arrays(book).items()})
        arrays = dict(cached[1])
        return BookState(
            book=book,
            holdings=Holdings(float(row[0]), positions),
            high_water_mark=float(row[1]),
            start_of_day_value=float(row[2]),
            session_date=row[3],
            last_cycle_time=pd.Timestamp(row[4]) if row[4] else None,
            cycle_count=int(row[5]),
            trading_state=row[6],
            halt_reason=row[7],
            halted_at=row[8],
            halted_by=row[9],
            symbols=tuple(json.loads(row[10])),
            model_run_id=row[11],
            arrays=arrays,
        )

    def _read_arrays(self, book: str) -> dict[str, np.ndarray]:
        """The book's buffers: the last whole write with the deltas since applied in order (within a snapshot)."""
        stored = {n: blob_to_array(b) for n, b in self._conn.execute("SELECT name, data FROM book_arrays WHERE book=?",
                                                                     (book,))}
        for name, axis, moved, newest in self._conn.execute(
                "SELECT name, axis, moved, newest FROM book_array_deltas WHERE book=? ORDER BY seq, name", (book,)):
            stored[name] = apply_shift_delta(stored[name], axis, blob_to_array(moved), blob_to_array(newest))
        return stored

    def cycle_done(self, book: str, cycle_time) -> bool:
        return (
            self._conn.execute("SELECT 1 FROM cycles WHERE book=? AND cycle_time=?", (book, _iso(cycle_time))).fetchone()
            is not None
        )

    def commit_cycles(self, state: BookState, records: list[CycleRecord], columns: bytes,
                      events: list[tuple[str, str, str, dict]] = (), attribution_state: bytes | None = None,
                      lock: tuple[str, float] | None = None, histories: dict[str, int] | None = None) -> tuple[bool, str]:
        """Write completed cycles and the book's state after the last of them in one transaction.

        ``records`` are the cycles in time order (their ``ledger`` entries are
        appended to the book's ledger, whose fold ``state.holdings`` must be),
        ``columns`` their decisions and traces as one :mod:`foxlive_core.cycle_table` Parquet table,
        ``attribution_state`` a replay's running signal attribution (to resume
        it). Returns the stored (trading state, halt reason).

        Refuses (StateError) a cycle already committed for this book, so a
        cycle can never be applied twice. With ``lock`` (owner, ttl seconds)
        the commit happens only if ``owner`` still holds the book's lock, and
        renews it for ``ttl`` seconds, in the same transaction: a process whose
        expired lock was taken over writes nothing more, and one that commits
        keeps its lock however long it runs. The trading state is not taken from
        ``state``: a ``halt`` event in ``events`` (the engine's kill switch)
        makes an active book ``reducing``; otherwise the stored state is kept
        as it is (set or resumed by an operator while the cycles ran).

        ``histories`` names the buffers that are histories, with their slot axis: when
        this connection holds the buffers as stored and each of those changed by at most
        one slot per row, only those changes are written (:func:`shift_delta`), and
        every other buffer whole (a history holding :data:`ARRAY_DELTA_LIMIT` deltas too,
        one a commit); otherwise all of them whole.
        """
        if not records:
            raise StateError(f"book {state.book!r}: nothing to commit")
        now = utcnow().isoformat()
        times = [_iso(r.cycle_time) for r in records]
        digest = hashlib.sha256(columns).hexdigest()
        inline = len(columns) <= INLINE_COLUMNS_BYTES
        relpath = None if inline else self._write_columns(state.book, times[0], columns)
        cached = self._arrays_cache.pop(state.book, None)
        deltas = _buffer_deltas(state.arrays, cached[1] if cached else None, histories or {})
        with self.transaction() as c:
            if lock is not None:
                self._renew_lock(c, state.book, *lock)
            done = c.execute(
                "SELECT cycle_time FROM cycles WHERE book=? AND cycle_time BETWEEN ? AND ? LIMIT 1",
                (state.book, times[0], times[-1]),
            ).fetchone()
            if done:
                raise StateError(f"book {state.book!r}: cycle {done[0]} is already committed; a cycle is never applied twice")
            # The halt columns change only when a cycle tripped the kill switch (a 'halt' event), and then
            # only if no halt stands: a commit never clears a halt, nor re-sets one an operator resumed while
            # the cycle ran, nor rewrites who set a standing halt and why. Only resume() clears a halt.
            trip = next((e for e in events if e[0] == "halt"), None)
            c.execute(
                "UPDATE book_state SET cash=?, high_water_mark=?, start_of_day_value=?, session_date=?, last_cycle_time=?, "
                "cycle_count=?, symbols=?, model_run_id=?, updated_at=? WHERE book=?",
                (
                    state.cash, state.high_water_mark, state.start_of_day_value, state.session_date, times[-1],
                    state.cycle_count, json.dumps(list(state.symbols)), state.model_run_id, now, state.book,
                ),
            )
            if trip is not None and not c.execute(
                "UPDATE book_state SET trading_state=?, halt_reason=?, halted_at=?, halted_by=? "
                "WHERE book=? AND trading_state=?",
                (REDUCING, trip[2], now, trip[1], state.book, ACTIVE),
            ).rowcount:
                # A halt already stands: the kill switch changed nothing, so it records no second halt
                # (the risk sensor keys each halt by its event).
                events = [e for e in events if e is not trip]
            trading_state, reason = c.execute("SELECT trading_state, halt_reason FROM book_state WHERE book=?",
                                              (state.book,)).fetchone()
            halted = trading_state != ACTIVE
            c.execute("DELETE FROM book_positions WHERE book=?", (state.book,))
            c.executemany(
                "INSERT INTO book_positions (book, symbol, quantity, avg_price) VALUES (?, ?, ?, ?)",
                [(state.book, s, q, p) for s, (q, p) in state.positions.items() if q != 0],
            )
            # the cycles' own orders are settled by this commit; an intent of an earlier crashed run was resolved before
            c.execute("UPDATE intents SET status='committed', resolved_at=? WHERE book=? AND status='open' "
                      "AND cycle_time BETWEEN ? AND ?", (now, state.book, times[0], times[-1]))
            try:
                insert_ledger_entries(c, state.book, [e for r in records for e in r.ledger])
            except sqlite3.IntegrityError as exc:
                raise StateError(f"book {state.book!r}: a fill of these cycles is already in the ledger ({exc}); "
                                 "a fill is booked once") from exc
            # Read under the write lock: no other commit can come between it and this one (which leaves it as it is).
            version = self._data_version()
            self._write_arrays(c, state, deltas if cached is not None and cached[0] == version else None, histories or {})
            c.executemany(
                "INSERT INTO cycles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        state.book, t, r.portfolio_value, r.cash, r.gross_exposure, r.net_exposure,
                        r.drawdown, r.daily_return, r.n_trade, r.n_hold, r.n_blocked,
                        r.n_orders, r.n_fills, r.fees, r.traded_notional, int(halted if t == times[-1] else r.halted),
                        json.dumps(r.summary, default=str), now,
                    )
                    for t, r in zip(times, records)
                ],
            )
            c.executemany(
                "INSERT OR IGNORE INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(state.book, o[0], t, *o[1:]) for t, r in zip(times, records) for o in r.orders],
            )
            c.execute(
                "INSERT INTO cycle_columns (book, first_cycle, last_cycle, n_cycles, data, path, sha256) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (state.book, times[0], times[-1], len(times), columns if inline else None, relpath, digest),
            )
            if attribution_state is not None:
                c.execute("INSERT OR REPLACE INTO attribution_state (book, data) VALUES (?, ?)", (state.book, attribution_state))
            for kind, actor, reason_text, details in events:
                c.execute(
                    "INSERT INTO events (book, time, kind, actor, reason, details) VALUES (?, ?, ?, ?, ?, ?)",
                    (state.book, now, kind, actor, reason_text, json.dumps(details, default=str)),
                )
        if cached is not None:  # what the book's rows now hold: the buffers read before, as this commit replaced them
            committed = {n: a if not a.flags.writeable else _read_only(a.copy()) for n, a in state.arrays.items()}
            self._arrays_cache[state.book] = (version, {**cached[1], **committed})
        return trading_state, reason

    @staticmethod
    def _write_arrays(c: sqlite3.Connection, state: BookState, deltas: dict | None, histories: dict[str, int]) -> None:
        """Store the book's buffers: ``deltas`` (see :func:`_buffer_deltas`) and the buffers that are not
        ``histories`` whole (a history without a delta did not change), or all of them whole.

        Once a history holds :data:`ARRAY_DELTA_LIMIT` deltas it is written whole again, at most one
        history a commit (the one holding the most): their whole writes fall on different commits,
        so no live cycle writes every buffer at once.
        """
        if deltas is None:
            c.execute("DELETE FROM book_array_deltas WHERE book=?", (state.book,))
            whole = state.arrays
        else:
            held = dict(c.execute("SELECT name, COUNT(*) FROM book_array_deltas WHERE book=? GROUP BY name",
                                  (state.book,)))
            most = max(held, key=lambda n: (held[n], n), default=None)
            compact = {most} if most is not None and held[most] >= ARRAY_DELTA_LIMIT else set()
            whole = {n: a for n, a in state.arrays.items() if n not in histories or n in compact}
            c.executemany("DELETE FROM book_array_deltas WHERE book=? AND name=?", [(state.book, n) for n in compact])
            c.executemany(
                "INSERT INTO book_array_deltas (book, seq, name, axis, moved, newest) VALUES (?, ?, ?, ?, ?, ?)",
                [(state.book, state.cycle_count, n, axis, array_to_blob(moved), array_to_blob(newest))
                 for n, (axis, moved, newest) in deltas.items() if n not in compact],
            )
        c.executemany("INSERT OR REPLACE INTO book_arrays (book, name, data) VALUES (?, ?, ?)",
                      [(state.book, n, array_to_blob(a)) for n, a in whole.items()])

    # ------------------------------------------------------------------ order intents (crash safety)

    def record_intents(self, book: str, cycle_time, attempt: int, orders: list[OrderRequest]) -> None:
        """Record, durably and before any is sent, the orders the cycle at ``cycle_time`` is about to send."""
        now = utcnow().isoformat()
        t = _iso(cycle_time)
        try:
            with self.transaction() as c:
                c.executemany(
                    "INSERT INTO intents (book, client_order_id, cycle_time, attempt, seq, symbol, side, quantity, "
                    "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(book, o.client_order_id, t, attempt, i, o.symbol, o.side, o.quantity, now) for i, o in enumerate(orders)],
                )
        except sqlite3.IntegrityError as exc:
            raise StateError(f"book {book!r}: an order id of the cycle at {t} was recorded before ({exc}); "
                             "an order id is sent once") from exc

    def open_intents(self, book: str) -> list[Intent]:
        """Intents of ``book`` whose cycle was never committed and which no run has resolved yet, in recording order."""
        rows = self._conn.execute(
            f"SELECT {INTENT_COLUMNS} FROM intents WHERE book=? AND status='open' ORDER BY cycle_time, attempt, seq",
            (book,))
        return [_intent_from_row(r) for r in rows]

    def answered_intents(self, book: str, cycle_time) -> list[Intent]:
        """Intents of the (uncommitted) cycle at ``cycle_time`` that the broker answered after a crash, in order."""
        marks = ", ".join("?" * len(ANSWERED))
        rows = self._conn.execute(
            f"SELECT {INTENT_COLUMNS} FROM intents WHERE book=? AND cycle_time=? AND status IN ({marks}) "
            "ORDER BY attempt, seq", (book, _iso(cycle_time), *ANSWERED))
        return [_intent_from_row(r) for r in rows]

    def next_attempt(self, book: str, cycle_time) -> int:
        """1 + the number of runs of the cycle at ``cycle_time`` that recorded intents."""
        row = self._conn.execute("SELECT MAX(attempt) FROM intents WHERE book=? AND cycle_time=?",
                                 (book, _iso(cycle_time))).fetchone()
        return 1 + (row[0] or 0)

    def last_recovered_cycle(self, book: str) -> pd.Timestamp | None:
        """The newest cycle time of a fill booked by recovery (its cycle crashed), or None."""
        row = self._conn.execute(
            "SELECT MAX(cycle_time) FROM intents WHERE book=? AND status IN ('filled', 'partially_filled')", (book,)
        ).fetchone()
        return pd.Timestamp(row[0]) if row[0] else None

    def resolve_intents(self, book: str, outcomes: list[tuple[Intent, OrderResult | None]], actor: str) -> list[LedgerEntry]:
        """Book what the broker answered for open intents, in one transaction; returns the fills booked.

        ``outcomes`` pairs each open intent with the broker's result for its
        client order id (None: the broker never received it). Every fill is
        appended to the ledger (source ``recovery``) and folded into the
        book's cash and positions, with a ``recovered_fill`` event; each intent
        is marked with the broker's answer, or ``not_submitted``. A fill
        already in the ledger is not booked again.
        """
        now = utcnow().isoformat()
        booked: list[LedgerEntry] = []
        with self.transaction() as c:
            holdings = self._stored_holdings(c, book)
            for intent, result in outcomes:
                fill = None if result is None else result.fill
                if fill is not None and c.execute("SELECT 1 FROM ledger WHERE book=? AND client_order_id=?",
                                                  (book, fill.client_order_id)).fetchone() is None:
                    entry = fill_entry(fill, intent.cycle_time, "recovery")
                    holdings.apply(entry)
                    booked.append(entry)
                    c.execute(
                        "INSERT INTO events (book, time, kind, actor, reason, details) VALUES (?, ?, 'recovered_fill', ?, ?, ?)",
                        (book, now, actor, f"the broker filled {fill.side} {fill.quantity} {fill.symbol} of the cycle "
                         f"at {_iso(intent.cycle_time)}, which was never committed",
                         json.dumps({"client_order_id": fill.client_order_id, "quantity": entry.quantity,
                                     "price": fill.price, "fee": fill.fee, "attempt": intent.attempt})),
                    )
                c.execute(
                    "UPDATE intents SET status=?, filled_quantity=?, price=?, fee=?, reject_reason=?, resolved_at=? "
                    "WHERE book=? AND client_order_id=?",
                    ("not_submitted", 0, None, 0.0, "", now, book, intent.client_order_id) if result is None else
                    (result.status, result.filled_quantity, fill.price if fill else None, fill.fee if fill else 0.0,
                     result.reject_reason, now, book, intent.client_order_id),
                )
            insert_ledger_entries(c, book, booked)
            self._store_holdings(c, book, holdings, now)
            counts = {status: sum(1 for i, r in outcomes if (r.status if r else "not_submitted") == status)
                      for status in (*ANSWERED, "not_submitted")}
            c.execute(
                "INSERT INTO events (book, time, kind, actor, reason, details) VALUES (?, ?, 'recovery', ?, ?, ?)",
                (book, now, actor, f"resolved {len(outcomes)} intent(s) of cycle(s) never committed at the broker; "
                 f"booked {len(booked)} fill(s)",
                 json.dumps({"cycles": sorted({_iso(i.cycle_time) for i, _ in outcomes}), "counts": counts})),
            )
        return booked

    def adjust(self, book: str, entries: list[LedgerEntry], event: tuple[str, str, str, dict]) -> None:
        """Append ``entries`` to ``book``'s ledger, fold them into its cash and positions and record ``event``
        ((kind, actor, reason, details)), in one transaction."""
        now = utcnow().isoformat()
        with self.transaction() as c:
            holdings = self._stored_holdings(c, book)
            for entry in entries:
                holdings.apply(entry)
            insert_ledger_entries(c, book, entries)
            self._store_holdings(c, book, holdings, now)
            kind, actor, reason, details = event
            c.execute("INSERT INTO events (book, time, kind, actor, reason, details) VALUES (?, ?, ?, ?, ?, ?)",
                      (book, now, kind, actor, reason, json.dumps(details, default=str)))

    def _stored_holdings(self, c: sqlite3.Connection, book: str) -> Holdings:
        cash = c.execute("SELECT cash FROM book_state WHERE book=?", (book,)).fetchone()
        if cash is None:
            raise StateError(f"book {book!r} does not exist; known books: {self.books()}")
        return Holdings(cash[0], {s: (q, p) for s, q, p in c.execute(
            "SELECT symbol, quantity, avg_price FROM book_positions WHERE book=?", (book,))})

    @staticmethod
    def _store_holdings(c: sqlite3.Connection, book: str, holdings: Holdings, now: str) -> None:
        c.execute("UPDATE book_state SET cash=?, updated_at=? WHERE book=?", (holdings.cash, now, book))
        c.execute("DELETE FROM book_positions WHERE book=?", (book,))
        c.executemany("INSERT INTO book_positions (book, symbol, quantity, avg_price) VALUES (?, ?, ?, ?)",
                      [(book, s, q, p) for s, (q, p) in holdings.positions.items()])

    def holdings_at_start(self, book: str, cycle_time) -> Holdings:
        """The fold of ``book``'s ledger without the fills of the cycle at ``cycle_time``: the book as that cycle began."""
        t = pd.Timestamp(cycle_time)
        return Holdings.fold(e for e in self.ledger_entries(book) if not (e.kind == FILL and e.cycle_time == t))

    # ------------------------------------------------------------------ halt / resume

    def halt(self, book: str, reason: str, actor: str, details: dict | None = None, mode: str = "reducing") -> bool:
        """Halt ``book``: ``mode`` 'reducing' (only risk-reducing orders) or 'stop' (state ``halted``: no orders).

        Returns True when the state changed: an active book halts, a reducing
        one is stopped. A standing halt at least as strict is kept with its
        reason (returns False); nothing here makes a book less strict.
        """
        if not reason.strip():
            raise StateError("a halt needs a reason; say why trading stops")
        if mode not in HALT_MODES:
            raise StateError(f"halt mode {mode!r} is not one of {sorted(HALT_MODES)}")
        target = HALT_MODES[mode]
        now = utcnow().isoformat()
        with self.transaction() as c:
            row = c.execute("SELECT trading_state, halt_reason FROM book_state WHERE book=?", (book,)).fetchone()
            if row is None:
                raise StateError(f"book {book!r} does not exist; known books: {self.books()}")
            if TRADING_STATES.index(row[0]) >= TRADING_STATES.index(target):
                return False
            c.execute(
                "UPDATE book_state SET trading_state=?, halt_reason=?, halted_at=?, halted_by=?, updated_at=? WHERE book=?",
                (target, reason, now, actor, now, book),
            )
            previous = {} if row[0] == ACTIVE else {"previous_state": row[0], "previous_reason": row[1]}
            c.execute(
                "INSERT INTO events (book, time, kind, actor, reason, details) VALUES (?, ?, 'halt', ?, ?, ?)",
                (book, now, actor, reason, json.dumps({"trading_state": target, **previous, **(details or {})}, default=str)),
            )
        return True

    def resume(self, book: str, operator: str, reason: str) -> bool:
        """Make ``book`` active again: the only way a halt is cleared. Returns False if the book was active."""
        if not operator.strip() or not reason.strip():
            raise StateError("resuming a book needs an operator and a reason (who resumes it, and why)")
        now = utcnow().isoformat()
        with self.transaction() as c:
            row = c.execute("SELECT trading_state, halt_reason FROM book_state WHERE book=?", (book,)).fetchone()
            if row is None:
                raise StateError(f"book {book!r} does not exist; known books: {self.books()}")
            if row[0] == ACTIVE:
                return False
            c.execute(
                "UPDATE book_state SET trading_state=?, halt_reason='', halted_at=NULL, halted_by='', updated_at=? "
                "WHERE book=?",
                (ACTIVE, now, book),
            )
            c.execute(
                "INSERT INTO events (book, time, kind, actor, reason, details) VALUES (?, ?, 'resume', ?, ?, ?)",
                (book, now, operator, reason, json.dumps({"cleared_halt_reason": row[1], "cleared_state": row[0]})),
            )
        return True

    def trading_state(self, book: str) -> tuple[str, str]:
        """(trading state, halt reason) of ``book``; an unknown book is active."""
        row = self._conn.execute("SELECT trading_state, halt_reason FROM book_state WHERE book=?", (book,)).fetchone()
        return (ACTIVE, "") if row is None else (row[0], row[1])

    def halt_status(self, book: str) -> tuple[bool, str]:
        """(whether ``book`` is not active, the halt's reason)."""
        state, reason = self.trading_state(book)
        return state != ACTIVE, reason

    def refuse_replay_if_halted(self, book: str) -> None:
        """Raise StateError when ``book`` is halted or reducing: a replay restarts its book, which would lift the halt.

        A halt binds a replay book as it binds the live one, until an operator resumes it.
        """
        state, reason = self.trading_state(book)
        if state != ACTIVE:
            raise StateError(
                f"replay book {book!r} is {state} ({reason}); replaying would restart it and lift the halt. "
                f"Resume it first (`foxlive resume --book {book} --operator NAME --reason TEXT`, or the resume_book "
                "job), or replay on another book"
            )

    # ------------------------------------------------------------------ locks

    def acquire_lock(self, book: str, owner: str, ttl_seconds: float = LOCK_TTL_S) -> None:
        """Take the book's cycle lock or raise StateError naming its holder.

        ``owner`` is ``host:pid:token``. A lock whose owner process is gone
        (same host, pid not alive) is taken over at once and a ``lock_takeover``
        event recorded; a lock of another host is taken over only once expired,
        so the expiry bounds how long a crashed remote process can block the book.
        """
        now = utcnow()
        expires = now + pd.Timedelta(seconds=ttl_seconds)
        with self._lock_transaction() as c:
            row = c.execute("SELECT owner, acquired_at, expires_at FROM book_locks WHERE book=?", (book,)).fetchone()
            if row is not None and row[0] != owner:
                dead = owner_is_dead(row[0])
                if not dead and pd.Timestamp(row[2]) > now:
                    raise StateError(
                        f"book {book!r} is locked by {row[0]} since {row[1]} (until {row[2]}); cycles of one book never "
                        "overlap: wait for that cycle to finish"
                    )
                c.execute(
                    "INSERT INTO events (book, time, kind, actor, reason, details) VALUES (?, ?, 'lock_takeover', ?, ?, ?)",
                    (book, now.isoformat(), owner,
                     "the lock's owner process is gone" if dead else "the lock expired",
                     json.dumps({"previous_owner": row[0], "acquired_at": row[1], "expires_at": row[2]})),
                )
            c.execute(
                "INSERT OR REPLACE INTO book_locks (book, owner, acquired_at, expires_at) VALUES (?, ?, ?, ?)",
                (book, owner, now.isoformat(), expires.isoformat()),
            )

    @staticmethod
    def _renew_lock(c, book: str, owner: str, ttl_seconds: float) -> None:
        row = c.execute("SELECT owner FROM book_locks WHERE book=?", (book,)).fetchone()
        if row is None or row[0] != owner:
            raise StateError(
                f"book {book!r}: {owner} no longer holds the book's lock (held by {row[0] if row else 'nobody'}): it "
                "expired and was taken over, so nothing more is written; check the book, then run again (a replay: "
                "--resume continues after its last commit)")
        c.execute("UPDATE book_locks SET expires_at=? WHERE book=? AND owner=?",
                  ((utcnow() + pd.Timedelta(seconds=ttl_seconds)).isoformat(), book, owner))

    def release_lock(self, book: str, owner: str) -> None:
        with self._lock_transaction() as c:
            c.execute("DELETE FROM book_locks WHERE book=? AND owner=?", (book, owner))

    @contextmanager
    def _lock_transaction(self):
        """A transaction not synced to disk on its own: a lock row lost in a power cut belongs to a process
        that died with it (and a dead owner's lock is taken over), and the next synced commit carries it."""
        self._conn.execute("PRAGMA synchronous=NORMAL")
        try:
            with self.transaction() as c:
                yield c
        finally:
            self._conn.execute("PRAGMA synchronous=FULL")

    @contextmanager
    def locked(self, book: str, owner: str | None = None, ttl_seconds: float = LOCK_TTL_S):
        """Hold the book's lock for the block; the default owner is unique to this acquisition."""
        owner = owner or lock_owner(uuid.uuid4().hex[:12])
        self.acquire_lock(book, owner, ttl_seconds)
        try:
            yield owner
        finally:
            self.release_lock(book, owner)

    # ------------------------------------------------------------------ reads for reports

    def cycles(self, book: str) -> pd.DataFrame:
        frame = pd.read_sql_query("SELECT * FROM cycles WHERE book=? ORDER BY cycle_time", self._conn, params=(book,))
        frame["cycle_time"] = pd.to_datetime(frame["cycle_time"], utc=True)
        return frame

    def last_cycle(self, book: str) -> dict | None:
        """The newest committed cycle of ``book`` as a dict (the cycles table's columns), or None."""
        cur = self._conn.execute("SELECT * FROM cycles WHERE book=? ORDER BY cycle_time DESC LIMIT 1", (book,))
        row = cur.fetchone()
        return None if row is None else dict(zip([d[0] for d in cur.description], row))

    def _book_columns_dir(self, book: str) -> Path:
        return self.columns_dir / book

    def _write_columns(self, book: str, first_cycle: str, data: bytes) -> str:
        """Write a chunk's Parquet bytes durably to its file; returns its path relative to ``columns_dir``."""
        directory = self._book_columns_dir(book)
        directory.mkdir(parents=True, exist_ok=True)
        name = pd.Timestamp(first_cycle).strftime("%Y%m%dT%H%M%SZ") + ".parquet"
        tmp = directory / (name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, directory / name)
        return f"{book}/{name}"

    def _column_chunks(self, book: str, cycle_time=None) -> list[bytes]:
        """The Parquet chunks of ``book`` (the one holding ``cycle_time``, or all), oldest first, checksums verified."""
        if cycle_time is None:
            rows = self._conn.execute(
                "SELECT data, path, sha256 FROM cycle_columns WHERE book=? ORDER BY first_cycle", (book,)
            ).fetchall()
        else:
            t = _iso(cycle_time)
            rows = self._conn.execute(
                "SELECT data, path, sha256 FROM cycle_columns WHERE book=? AND first_cycle<=? AND last_cycle>=?",
                (book, t, t),
            ).fetchall()
        chunks = []
        for data, relpath, digest in rows:
            where = "its database row" if relpath is None else str(self.columns_dir / relpath)
            if data is None:
                try:
                    data = (self.columns_dir / relpath).read_bytes()
                except OSError as exc:
                    raise StateError(f"book {book!r}: the decisions file {where} cannot be read ({exc}); "
                                     "replay the book again to rebuild it") from exc
            if hashlib.sha256(data).hexdigest() != digest:
                raise StateError(f"book {book!r}: the decisions in {where} do not match their checksum; "
                                 "the file was changed or damaged: replay the book again to rebuild it")
            chunks.append(data)
        return chunks

    def decisions(self, book: str, cycle_time=None, symbol: str | None = None) -> pd.DataFrame:
        """Every symbol's decision per cycle (see :func:`foxlive_core.cycle_table.decisions_frame`), time order."""
        frames = [decisions_frame(blob) for blob in self._column_chunks(book, cycle_time)]
        if not frames:
            return decisions_frame_columns()
        frame = pd.concat(frames, ignore_index=True)
        if cycle_time is not None:
            frame = frame[frame["cycle_time"] == pd.Timestamp(cycle_time).tz_convert("UTC")]
        if symbol is not None:
            frame = frame[frame["symbol"] == symbol]
        return frame.reset_index(drop=True)

    def ledger(self, book: str) -> pd.DataFrame:
        """``book``'s ledger in booking order (``seq``), one row per entry (see :mod:`foxlive_core.portfolio`)."""
        frame = pd.read_sql_query(f"SELECT seq, {LEDGER_COLUMNS} FROM ledger WHERE book=? ORDER BY seq", self._conn,
                                  params=(book,))
        for column in ("time", "cycle_time"):
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
        return frame

    def ledger_entries(self, book: str) -> list[LedgerEntry]:
        """``book``'s ledger entries in booking order."""
        rows = self._conn.execute(f"SELECT {LEDGER_COLUMNS} FROM ledger WHERE book=? ORDER BY seq", (book,))
        return [_entry_from_row(r) for r in rows]

    def check_ledger(self, book: str) -> list[str]:
        """Where ``book``'s stored cash and positions differ from the fold of its ledger; [] when they agree.

        Read in one transaction, so a commit in between cannot make them differ.
        """
        with self._read():
            entries = self.ledger_entries(book)
            stored = self.load(book).holdings
        return differences(Holdings.fold(entries), stored, ("ledger", "stored state"))

    @contextmanager
    def _read(self):
        """A read transaction: every read inside sees the same commit."""
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.execute("COMMIT")

    def orders(self, book: str) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM orders WHERE book=? ORDER BY cycle_time, client_order_id", self._conn, params=(book,))

    def cycle_trace(self, book: str, at=None):
        """The whole trace of ``book``'s last cycle at or before ``at`` (default: its last), for explain; None if none."""
        if at is None:
            row = self._conn.execute("SELECT MAX(cycle_time) FROM cycles WHERE book=?", (book,)).fetchone()
        else:
            row = self._conn.execute("SELECT MAX(cycle_time) FROM cycles WHERE book=? AND cycle_time<=?",
                                     (book, _iso(at))).fetchone()
        if row is None or row[0] is None:
            return None
        t = pd.Timestamp(row[0]).tz_convert("UTC")
        chunks = self._column_chunks(book, t)
        return read_cycle(chunks[0], t) if chunks else None

    def events(self, book: str | None = None) -> pd.DataFrame:
        if book is None:
            return pd.read_sql_query("SELECT * FROM events ORDER BY id", self._conn)
        return pd.read_sql_query("SELECT * FROM events WHERE book=? ORDER BY id", self._conn, params=(book,))

    # ------------------------------------------------------------------ signal attribution

    def save_attribution(self, book: str, report: dict) -> None:
        """Keep the signal attribution of ``book``'s latest replay (foxlive_core.attribution)."""
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO attribution (book, saved_at, report) VALUES (?, ?, ?)",
                      (book, utcnow().isoformat(), json.dumps(report)))

    def attribution(self, book: str) -> dict | None:
        row = self._conn.execute("SELECT report FROM attribution WHERE book=?", (book,)).fetchone()
        return json.loads(row[0]) if row else None

    def attribution_state(self, book: str) -> bytes | None:
        """The running signal attribution stored with ``book``'s last replay chunk (to resume the replay)."""
        row = self._conn.execute("SELECT data FROM attribution_state WHERE book=?", (book,)).fetchone()
        return row[0] if row else None

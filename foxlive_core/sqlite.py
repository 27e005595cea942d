"""SQLite as the state store and the paper ledger use it: WAL, explicit transactions."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def open_sqlite(path: Path | str, *, timeout_s: float = 30.0, synchronous: str = "FULL",
                wal_autocheckpoint_pages: int = 1000) -> sqlite3.Connection:
    """A connection in WAL mode with a busy timeout; transactions are begun and ended explicitly."""
    conn = sqlite3.connect(str(path), timeout=timeout_s, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA wal_autocheckpoint={int(wal_autocheckpoint_pages)}")
    conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    return conn


@contextmanager
def immediate_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any error: the write lock is taken up front,
    so what the transaction reads stays current until it commits."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")

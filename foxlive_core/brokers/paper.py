"""A paper broker: market orders filled against its venue's quote, the book kept in SQLite.

Quotes come from the broker's venue (:mod:`foxlive_core.brokers.venue`): the
quote of each ordered symbol at the order's time. Fills: a buy pays ``ask * (1 + slippage)``, a sell receives ``bid * (1 - slippage)``,
and the fee ``fee_bps * 1e-4 * notional`` is charged to cash on both sides. An
order larger than ``max_fill_fraction_of_displayed`` times the displayed size
on its side fills that many whole shares and the rest is cancelled (IOC).

Margin: an order that opens or adds to a position (either side, including a
sign flip) is refused with ``insufficient_cash`` unless, after it,
``cash >= (1 + short_margin) * short market value`` (the traded symbol valued
at its fill price, the others at their marks). With no shorts this is
``cash >= 0``: no borrowing. An order that only reduces a position is never
refused for cash, so a book can always be flattened.

Ledger: the account row, positions, orders and fills live in tables prefixed
``paper_`` keyed by ``account_id``; each :meth:`PaperBroker.submit_orders`
batch is one transaction, and every batch re-reads the book, so a new broker
on the same file (or another process) continues exactly where the last one
stopped. A ``client_order_id`` seen before returns its recorded result and
never trades again.
"""

from __future__ import annotations

import math
import numbers
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from foxlive_core.brokers.protocol import SIDES, Account, Fill, OrderRequest, OrderResult, Position, as_utc
from foxlive_core.brokers.venue import Venue
from foxlive_core.config import BrokerConfig
from foxlive_core.errors import BrokerError
from foxlive_core.portfolio import position_after
from foxlive_core.sqlite import immediate_transaction, open_sqlite

BPS = 1e-4
BUSY_TIMEOUT_S = 30.0
# Fixed width and UTC, so the text order of stored times is their time order.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f+00:00"
# SQLite's default limit on bound parameters is 32766; stay far below it.
ID_LOOKUP_CHUNK = 500
# floor(0.29 * 100) would give 28 in binary floating point; this nudge gives 29.
FLOOR_TOLERANCE = 1e-9

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS paper_accounts (
        account_id TEXT PRIMARY KEY,
        cash REAL NOT NULL,
        starting_cash REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS paper_positions (
        account_id TEXT NOT NULL,
        symbol TEXT NOT NULL,
        quantity INTEGER NOT NULL,
        avg_price REAL NOT NULL,
        realized_pnl REAL NOT NULL,
        last_price REAL NOT NULL,
        PRIMARY KEY (account_id, symbol)
    )""",
    # side and requested_quantity have no type affinity: a rejected order's bad
    # value is stored as given, so its replayed result equals the original.
    """CREATE TABLE IF NOT EXISTS paper_orders (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        account_id TEXT NOT NULL,
        client_order_id TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side,
        requested_quantity,
        filled_quantity INTEGER NOT NULL,
        status TEXT NOT NULL,
        reject_reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        time TEXT NOT NULL,
        UNIQUE (account_id, client_order_id)
    )""",
    """CREATE TABLE IF NOT EXISTS paper_fills (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        account_id TEXT NOT NULL,
        client_order_id TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        quantity INTEGER NOT NULL,
        price REAL NOT NULL,
        fee REAL NOT NULL,
        notional REAL NOT NULL,
        time TEXT NOT NULL,
        UNIQUE (account_id, client_order_id)
    )""",
    "CREATE INDEX IF NOT EXISTS paper_fills_by_time ON paper_fills (account_id, time)",
)

ORDER_COLUMNS = (
    "o.client_order_id, o.symbol, o.side, o.requested_quantity, o.filled_quantity, o.status, o.reject_reason, "
    "o.detail, f.quantity, f.price, f.fee, f.notional, f.time"
)
FILL_COLUMNS = "client_order_id, symbol, side, quantity, price, fee, notional, time"


@dataclass
class _Holding:
    """One symbol's row of ``paper_positions``; kept after it goes flat so realised P&L survives."""

    quantity: int
    avg_price: float
    realized_pnl: float
    last_price: float

    def apply(self, signed_quantity: int, price: float) -> None:
        """Book a fill: P&L realised on the part that reduces, the average price by foxlive's one rule."""
        old = self.quantity
        if old != 0 and (old > 0) != (signed_quantity > 0):
            closed = min(abs(signed_quantity), abs(old))
            self.realized_pnl += (price - self.avg_price) * closed * (1 if old > 0 else -1)
        self.quantity, self.avg_price = position_after(old, self.avg_price, signed_quantity, price)
        self.last_price = price


@dataclass
class _Book:
    """The account as one batch sees it; ``short_value`` is the short market value at the marks."""

    cash: float
    holdings: dict[str, _Holding]
    short_value: float


class PaperBroker:
    """Simulated execution against the quotes of ``venue`` (see the module doc); one adapter of
    :class:`~foxlive_core.brokers.protocol.Broker` (``broker.kind: paper``).

    Parameters
    ----------
    config : BrokerConfig
        ``starting_cash`` (for a new account), ``slippage_bps``, ``fee_bps``,
        ``max_fill_fraction_of_displayed``, ``short_margin``.
    db_path : Path or str, optional
        SQLite file of the ledger (WAL mode; may hold other tables too). None
        keeps the ledger in an in-memory database that dies with the broker.
    account_id : str
        The account inside the file; several accounts can share one file.
    venue : Venue, optional
        Where quotes come from (the market data source, or a SimulatedVenue).
        Without one the broker keeps and reports its book but cannot fill.

    Marks: a position is marked at the mid of the latest valid quote the venue
    showed (at the time of the account's latest order); a symbol never quoted
    to this broker is marked at its last fill price.
    """

    def __init__(self, config: BrokerConfig, db_path: Path | str | None = None, account_id: str = "paper",
                 venue: Venue | None = None) -> None:
        if not isinstance(account_id, str) or not account_id:
            raise BrokerError(f"account_id must be a non-empty string, got {account_id!r}", "bad_account_id")
        self.config = config
        self.account_id = account_id
        self.db_path = None if db_path is None else Path(db_path)
        self._slippage = config.slippage_bps * BPS
        self._fee_rate = config.fee_bps * BPS
        self.venue = venue
        self._quotes: dict[tuple[datetime, str], tuple[float, float, float, float]] = {}
        self._marks: dict[str, float] = {}
        self._lock = threading.RLock()
        self._conn = self._connect()
        with self._transaction() as conn:
            for statement in SCHEMA:
                conn.execute(statement)
            conn.execute(
                "INSERT OR IGNORE INTO paper_accounts (account_id, cash, starting_cash) VALUES (?, ?, ?)",
                (account_id, float(config.starting_cash), float(config.starting_cash)),
            )

    # ------------------------------------------------------------------ connection

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are begun and ended explicitly below.
        if self.db_path is None:
            conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        else:
            try:
                self.db_path.parent.mkdir(parents=True, exist_ok=True)
                conn = open_sqlite(self.db_path, timeout_s=BUSY_TIMEOUT_S)
            except (OSError, sqlite3.Error) as exc:
                raise BrokerError(
                    f"cannot open the paper ledger {str(self.db_path)!r}: {exc}; give a writable SQLite file path",
                    "ledger_unavailable",
                ) from exc
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; IMMEDIATE takes the write lock up front so the book read inside stays current."""
        with self._lock, immediate_transaction(self._conn) as conn:
            yield conn

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction, so cash and positions come from the same commit."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> PaperBroker:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------ quotes and marks

    def _look(self, symbols, at: datetime) -> None:
        """Ask the venue for ``symbols``' quotes at ``at``: they fill orders of that time and mark the book.

        A symbol whose quote is invalid cannot trade at ``at``; it keeps its last valid mid as its mark.
        """
        symbols = sorted(set(symbols))
        if self.venue is None or not symbols:
            return
        quotes = self.venue.quotes(symbols, at)
        bid = np.asarray(quotes.bid, dtype=np.float64)
        ask = np.asarray(quotes.ask, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(bid) & np.isfinite(ask) & (bid > 0) & (ask > 0) & (bid <= ask)
        mid = 0.5 * (bid + ask)
        rows = zip(
            quotes.symbols,
            bid.tolist(),
            ask.tolist(),
            np.asarray(quotes.bid_size, dtype=np.float64).tolist(),
            np.asarray(quotes.ask_size, dtype=np.float64).tolist(),
        )
        self._quotes.update(((at, symbol), (b, a, bs, asz)) for symbol, b, a, bs, asz in rows)
        self._marks.update((s, m) for s, m, ok in zip(quotes.symbols, mid.tolist(), valid.tolist()) if ok)

    def _mark(self, symbol: str, holding: _Holding) -> float:
        return self._marks.get(symbol, holding.last_price)

    # ------------------------------------------------------------------ orders

    def submit_order(self, request: OrderRequest) -> OrderResult:
        """Submit one order; a rejected order raises ``BrokerError`` whose ``reason`` is the reject code."""
        result = self.submit_orders([request])[0]
        if result.status == "rejected":
            raise BrokerError(f"order {result.client_order_id!r} rejected: {result.detail}", result.reject_reason)
        return result

    def submit_orders(self, requests: Sequence[OrderRequest]) -> list[OrderResult]:
        """Execute a batch in order, in one transaction; one result per request.

        A request whose ``client_order_id`` was seen before (in an earlier
        batch or earlier in this one) gets the recorded result back, unchanged,
        whether that was a fill or a rejection: retry with a new id.
        """
        requests = list(requests)
        if not requests:
            return []
        if self.venue is None:
            raise BrokerError(f"paper account {self.account_id!r} has no venue to fill against; open it with one "
                              "(the market data source, or a SimulatedVenue)", "no_venue")
        with self._transaction() as conn:
            # the quotes of each order's time: the ordered symbols, and the shorts the margin check marks
            shorts = [r[0] for r in conn.execute(
                "SELECT symbol FROM paper_positions WHERE account_id = ? AND quantity < 0", (self.account_id,))]
            times: dict[datetime, set[str]] = {}
            for request in requests:
                times.setdefault(request.time, set()).add(request.symbol)
            self._quotes = {}
            for at in sorted(times):
                self._look(times[at] | set(shorts), at)
            book = self._load_book(conn)
            results_by_id = self._recorded_results(conn, {r.client_order_id for r in requests})
            results: list[OrderResult] = []
            order_rows: list[tuple] = []
            fill_rows: list[tuple] = []
            traded: set[str] = set()
            time_texts: dict[datetime, str] = {}  # a batch usually shares one time; format it once
            for request in requests:
                result = results_by_id.get(request.client_order_id)
                if result is None:
                    result = self._execute(request, book)
                    results_by_id[request.client_order_id] = result
                    time_text = time_texts.get(request.time)
                    if time_text is None:
                        time_text = time_texts[request.time] = request.time.strftime(TIME_FORMAT)
                    order_rows.append(
                        (
                            self.account_id, result.client_order_id, result.symbol, result.side,
                            result.requested_quantity, result.filled_quantity, result.status,
                            result.reject_reason, result.detail, time_text,
                        )
                    )
                    fill = result.fill
                    if fill is not None:
                        fill_rows.append(
                            (
                                self.account_id, fill.client_order_id, fill.symbol, fill.side, fill.quantity,
                                fill.price, fill.fee, fill.notional, time_text,
                            )
                        )
                        traded.add(fill.symbol)
                results.append(result)
            conn.executemany(
                "INSERT INTO paper_orders (account_id, client_order_id, symbol, side, requested_quantity, "
                "filled_quantity, status, reject_reason, detail, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                order_rows,
            )
            conn.executemany(f"INSERT INTO paper_fills (account_id, {FILL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", fill_rows)
            conn.executemany(
                "INSERT OR REPLACE INTO paper_positions (account_id, symbol, quantity, avg_price, realized_pnl, "
                "last_price) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (self.account_id, symbol, held.quantity, held.avg_price, held.realized_pnl, held.last_price)
                    for symbol, held in sorted((symbol, book.holdings[symbol]) for symbol in traded)
                ],
            )
            conn.execute("UPDATE paper_accounts SET cash = ? WHERE account_id = ?", (book.cash, self.account_id))
        return results

    def _execute(self, request: OrderRequest, book: _Book) -> OrderResult:
        """Fill or reject one new order, updating ``book`` in place on a fill."""
        order_id, symbol, side, quantity = request.client_order_id, request.symbol, request.side, request.quantity

        def rejected(reason: str, detail: str) -> OrderResult:
            return OrderResult(order_id, symbol, _storable(side), _storable(quantity), 0, "rejected", reason, None, detail)

        if request.order_type != "market":
            return rejected(
                "unsupported_order_type",
                f"order type {request.order_type!r} is not supported by the paper broker; use 'market'",
            )
        if side not in SIDES:
            return rejected("bad_side", f"side {side!r} is neither 'buy' nor 'sell'")
        if isinstance(quantity, bool) or not isinstance(quantity, numbers.Integral) or quantity <= 0:
            return rejected(
                "zero_quantity", f"quantity {quantity!r} is not a whole number of shares > 0; give a positive int"
            )
        quantity = int(quantity)
        quote = self._quotes.get((request.time, symbol))
        problem = _quote_problem(quote)
        if problem:
            return rejected(
                "no_quote", f"{symbol} {problem} at the venue at {request.time.isoformat()}; an order fills only "
                f"against a valid quote"
            )
        bid, ask, bid_size, ask_size = quote
        buying = side == "buy"
        displayed = ask_size if buying else bid_size
        fraction = self.config.max_fill_fraction_of_displayed
        fillable = math.floor(fraction * displayed + FLOOR_TOLERANCE) if math.isfinite(displayed) and displayed > 0 else 0
        if fillable < 1:
            return rejected(
                "no_liquidity",
                f"{symbol} displays {displayed:g} shares on the {'ask' if buying else 'bid'}; "
                f"max_fill_fraction_of_displayed {fraction:g} of that is less than one share; wait for a deeper quote",
            )
        filled = min(quantity, fillable)
        price = ask * (1.0 + self._slippage) if buying else bid * (1.0 - self._slippage)
        notional = filled * price
        fee = self._fee_rate * notional
        signed = filled if buying else -filled
        cash_after = book.cash - notional - fee if buying else book.cash + notional - fee

        holding = book.holdings.get(symbol)
        if holding is None:
            holding = book.holdings[symbol] = _Holding(0, 0.0, 0.0, price)
        old, new = holding.quantity, holding.quantity + signed
        mark = self._marks[symbol]
        short_after = book.short_value - max(0, -old) * mark + max(0, -new) * price
        adds_exposure = new != 0 and (old * new <= 0 or abs(new) > abs(old))
        if adds_exposure:
            required = (1.0 + self.config.short_margin) * short_after
            if cash_after < required:
                return rejected(
                    "insufficient_cash",
                    f"{side} {filled} {symbol} at {price:.4f} would leave cash {cash_after:.2f} below the "
                    f"{required:.2f} required ((1 + short_margin {self.config.short_margin:g}) x short market value "
                    f"{short_after:.2f}); trade fewer shares or reduce other positions first",
                )

        book.cash = cash_after
        book.short_value += (max(0, -new) - max(0, -old)) * mark
        holding.apply(signed, price)
        fill = Fill(order_id, symbol, side, filled, price, fee, notional, request.time)
        if filled < quantity:
            return OrderResult(
                order_id, symbol, side, quantity, filled, "partially_filled", "", fill,
                f"filled {filled} of {quantity}: {fraction:g} x displayed {'ask' if buying else 'bid'} size "
                f"{displayed:g}; the other {quantity - filled} shares were cancelled (IOC)",
            )
        return OrderResult(order_id, symbol, side, quantity, filled, "filled", "", fill)

    def cancel_order(self, client_order_id: str) -> bool:
        """Always False: paper market orders are immediate-or-cancel, so nothing ever rests to cancel."""
        return False

    # ------------------------------------------------------------------ reads

    def _load_book(self, conn: sqlite3.Connection) -> _Book:
        row = conn.execute("SELECT cash FROM paper_accounts WHERE account_id = ?", (self.account_id,)).fetchone()
        holdings = {
            symbol: _Holding(quantity, avg_price, realized_pnl, last_price)
            for symbol, quantity, avg_price, realized_pnl, last_price in conn.execute(
                "SELECT symbol, quantity, avg_price, realized_pnl, last_price FROM paper_positions "
                "WHERE account_id = ?",
                (self.account_id,),
            )
        }
        short_value = sum(-h.quantity * self._mark(s, h) for s, h in holdings.items() if h.quantity < 0)
        return _Book(row[0], holdings, short_value)

    def _recorded_results(self, conn: sqlite3.Connection, client_order_ids: set[str]) -> dict[str, OrderResult]:
        ids = sorted(client_order_ids)
        found: dict[str, OrderResult] = {}
        for start in range(0, len(ids), ID_LOOKUP_CHUNK):
            chunk = ids[start : start + ID_LOOKUP_CHUNK]
            rows = conn.execute(
                f"SELECT {ORDER_COLUMNS} FROM paper_orders o LEFT JOIN paper_fills f "
                "ON f.account_id = o.account_id AND f.client_order_id = o.client_order_id "
                f"WHERE o.account_id = ? AND o.client_order_id IN ({', '.join('?' * len(chunk))})",
                (self.account_id, *chunk),
            )
            for row in rows:
                found[row[0]] = _result_from_row(row)
        return found

    def order(self, client_order_id: str) -> OrderResult | None:
        with self._snapshot() as conn:
            return self._recorded_results(conn, {client_order_id}).get(client_order_id)

    def fills_since(self, ts: datetime) -> list[Fill]:
        """Fills with time >= ``ts``, oldest first (ties in submission order)."""
        since = as_utc(ts, "fills_since ts").strftime(TIME_FORMAT)
        with self._snapshot() as conn:
            rows = conn.execute(
                f"SELECT {FILL_COLUMNS} FROM paper_fills WHERE account_id = ? AND time >= ? ORDER BY time, seq",
                (self.account_id, since),
            ).fetchall()
        return [_fill_from_row(row) for row in rows]

    def orders(self, since: datetime | None = None) -> list[OrderResult]:
        """Orders submitted at or after ``since`` (every order when None), oldest first."""
        where, params = "", (self.account_id,)
        if since is not None:
            where, params = " AND o.time >= ?", (self.account_id, as_utc(since, "orders since").strftime(TIME_FORMAT))
        with self._snapshot() as conn:
            rows = conn.execute(
                f"SELECT {ORDER_COLUMNS} FROM paper_orders o LEFT JOIN paper_fills f "
                "ON f.account_id = o.account_id AND f.client_order_id = o.client_order_id "
                f"WHERE o.account_id = ?{where} ORDER BY o.time, o.seq",
                params,
            ).fetchall()
        return [_result_from_row(row) for row in rows]

    def positions(self) -> dict[str, Position]:
        """Open positions by symbol, marked at the venue's mid (see the class doc)."""
        with self._snapshot() as conn:
            self._mark_held(conn)
            return self._positions(conn)

    def _mark_held(self, conn: sqlite3.Connection) -> None:
        """Refresh the marks of the open positions from the venue, at the time of the account's latest order."""
        latest = conn.execute("SELECT MAX(time) FROM paper_orders WHERE account_id = ?", (self.account_id,)).fetchone()[0]
        if latest is None:
            return
        held = [r[0] for r in conn.execute(
            "SELECT symbol FROM paper_positions WHERE account_id = ? AND quantity != 0", (self.account_id,))]
        self._look(held, datetime.fromisoformat(latest))

    def _positions(self, conn: sqlite3.Connection) -> dict[str, Position]:
        positions = {}
        for symbol, quantity, avg_price, realized_pnl, last_price in conn.execute(
            "SELECT symbol, quantity, avg_price, realized_pnl, last_price FROM paper_positions "
            "WHERE account_id = ? AND quantity != 0 ORDER BY symbol",
            (self.account_id,),
        ):
            mark = self._marks.get(symbol, last_price)
            positions[symbol] = Position(symbol, quantity, avg_price, mark, quantity * mark, realized_pnl)
        return positions

    def account(self) -> Account:
        """Cash, equity = cash + sum(quantity * mid), and dollar exposures."""
        with self._snapshot() as conn:
            (cash,) = conn.execute("SELECT cash FROM paper_accounts WHERE account_id = ?", (self.account_id,)).fetchone()
            self._mark_held(conn)
            values = [p.market_value for p in self._positions(conn).values()]
        net = math.fsum(values)
        gross = math.fsum(abs(v) for v in values)
        return Account(cash=cash, equity=cash + net, gross_exposure=gross, net_exposure=net, positions_value=net)

    # ------------------------------------------------------------------ maintenance

    def reset(self, starting_cash: float | None = None) -> None:
        """Empty this account (positions, orders, fills) and give it ``starting_cash`` (default: the config's).

        Other accounts in the same file are untouched.
        """
        cash = self.config.starting_cash if starting_cash is None else starting_cash
        if isinstance(cash, bool) or not isinstance(cash, numbers.Real) or not math.isfinite(cash) or cash <= 0:
            raise BrokerError(f"starting_cash {cash!r} must be a finite amount > 0", "bad_starting_cash")
        with self._transaction() as conn:
            for table in ("paper_positions", "paper_orders", "paper_fills"):
                conn.execute(f"DELETE FROM {table} WHERE account_id = ?", (self.account_id,))
            conn.execute(
                "INSERT OR REPLACE INTO paper_accounts (account_id, cash, starting_cash) VALUES (?, ?, ?)",
                (self.account_id, float(cash), float(cash)),
            )

    def load_ledger(self, cash: float, positions: dict[str, tuple[int, float]]) -> None:
        """Make this account hold ``cash`` and ``positions`` (symbol -> (signed quantity, average price)).

        For an in-memory account that simulates a stored book's execution (a
        replay resumed at a chunk boundary): orders, fills and realised P&L
        start empty; a symbol is marked at its average price until quoted.
        """
        if not math.isfinite(cash):
            raise BrokerError(f"ledger cash {cash!r} must be finite", "bad_ledger")
        with self._transaction() as conn:
            for table in ("paper_positions", "paper_orders", "paper_fills"):
                conn.execute(f"DELETE FROM {table} WHERE account_id = ?", (self.account_id,))
            conn.execute("UPDATE paper_accounts SET cash = ? WHERE account_id = ?", (float(cash), self.account_id))
            conn.executemany(
                "INSERT INTO paper_positions (account_id, symbol, quantity, avg_price, realized_pnl, last_price) "
                "VALUES (?, ?, ?, ?, 0.0, ?)",
                [(self.account_id, s, int(q), float(p), float(p)) for s, (q, p) in sorted(positions.items()) if q != 0],
            )


def _quote_problem(quote: tuple[float, float, float, float] | None) -> str:
    """Why ``quote`` cannot be traded against, or '' if it can."""
    if quote is None:
        return "has no quote"
    bid, ask = quote[0], quote[1]
    if not (math.isfinite(bid) and math.isfinite(ask)) or bid <= 0 or ask <= 0:
        return f"has no usable quote (bid {bid!r}, ask {ask!r}; both must be finite and > 0)"
    if bid > ask:
        return f"has a crossed quote (bid {bid!r} > ask {ask!r})"
    return ""


def _storable(value):
    """``value`` as SQLite stores and returns it unchanged, so a replayed result equals the original."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, numbers.Integral)):
        return repr(value)
    return int(value) if isinstance(value, numbers.Integral) else value


def _fill_from_row(row) -> Fill:
    client_order_id, symbol, side, quantity, price, fee, notional, time_text = row
    return Fill(client_order_id, symbol, side, quantity, price, fee, notional, datetime.fromisoformat(time_text))


def _result_from_row(row) -> OrderResult:
    client_order_id, symbol, side, requested, filled, status, reason, detail = row[:8]
    fill = None
    if row[8] is not None:
        fill = _fill_from_row((client_order_id, symbol, side, *row[8:]))
    return OrderResult(client_order_id, symbol, side, requested, filled, status, reason, fill, detail)

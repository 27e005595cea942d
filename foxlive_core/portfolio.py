"""A book's money: one append-only ledger, and its positions, cash and marks as a fold over it.

The ledger (table ``ledger`` of the state store, see :mod:`foxlive_core.state`)
is the source of truth of a book's cash and positions. Each entry moves cash
and at most one position; :class:`Holdings` is their running sum, and
:meth:`Holdings.fold` rebuilds it from the entries alone. The state store keeps
the fold's result next to the ledger (written in the same transaction as the
entries), and :func:`differences` says where the two disagree.

Entry kinds, applied in ledger order:

- ``deposit``: ``cash += cash`` (a book's starting cash); no symbol.
- ``fill``: an execution of ``quantity`` signed shares at ``price`` with
  ``fee``; ``cash += cash`` where ``cash = -(quantity * price + fee)``; the
  position's average price follows :func:`position_after`.
- ``adjustment``: a correction of the book to what the broker reports
  (``foxlive reconcile --accept``) or an opening balance (the ledger's
  migration): the position moves by ``quantity`` and its average price becomes
  ``price``; ``cash += cash``.

Money is in the quote currency, quantities in whole signed shares (negative:
short), times timezone-aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from foxlive_core.decide import Portfolio

if TYPE_CHECKING:  # the brokers package books its own ledger with position_after: no import cycle at run time
    from foxlive_core.brokers.protocol import Fill

DEPOSIT, FILL, ADJUSTMENT = "deposit", "fill", "adjustment"
KINDS = (DEPOSIT, FILL, ADJUSTMENT)


@dataclass(frozen=True)
class LedgerEntry:
    """One movement of a book's cash and (at most) one position; see the module doc for each ``kind``.

    ``source`` says what wrote it: ``book`` (a book's creation), ``cycle``
    (a cycle's commit), ``recovery`` (a fill of a crashed cycle found at the
    broker), ``reconcile`` (an operator accepting the broker's view) or
    ``migration``. ``cycle_time`` is the cycle whose order made a fill (None
    for the other kinds); ``client_order_id`` identifies a fill's order.
    """

    kind: str
    time: datetime
    source: str
    cash: float = 0.0
    symbol: str = ""
    quantity: int = 0
    price: float = 0.0
    fee: float = 0.0
    client_order_id: str = ""
    cycle_time: pd.Timestamp | None = None
    note: str = ""


def fill_entry(fill: Fill, cycle_time: pd.Timestamp, source: str) -> LedgerEntry:
    """The ledger entry of a broker fill made by an order of the cycle at ``cycle_time``."""
    signed = fill.signed_quantity
    return LedgerEntry(
        kind=FILL, time=fill.time, source=source, cash=-(signed * fill.price + fill.fee), symbol=fill.symbol,
        quantity=signed, price=fill.price, fee=fill.fee, client_order_id=fill.client_order_id, cycle_time=cycle_time,
    )


def position_after(quantity: int, avg_price: float, signed_quantity: int, price: float) -> tuple[int, float]:
    """(quantity, average price) after trading ``signed_quantity`` shares at ``price``.

    Adding to a position (either side) averages the prices weighted by shares;
    reducing it keeps the average; closing it gives 0.0; opening or flipping it
    starts at ``price``. The one average-price rule of foxlive (the paper broker
    books its own ledger with it too).
    """
    new = quantity + signed_quantity
    if new == 0:
        return 0, 0.0
    if quantity == 0 or (quantity > 0) != (new > 0):
        return new, price
    if abs(new) > abs(quantity):
        return new, (quantity * avg_price + signed_quantity * price) / new
    return new, avg_price


class Holdings:
    """Cash and open positions (symbol -> (signed quantity, average price)); flat positions are dropped."""

    def __init__(self, cash: float = 0.0, positions: dict[str, tuple[int, float]] | None = None) -> None:
        self.cash = float(cash)
        self.positions: dict[str, tuple[int, float]] = {s: (int(q), float(p)) for s, (q, p) in (positions or {}).items() if q}

    @classmethod
    def fold(cls, entries) -> Holdings:
        """The holdings made by ``entries`` (in ledger order) from nothing."""
        holdings = cls()
        for entry in entries:
            holdings.apply(entry)
        return holdings

    def copy(self) -> Holdings:
        return Holdings(self.cash, self.positions)

    def apply(self, entry: LedgerEntry) -> None:
        """Book one ledger entry."""
        self.cash += entry.cash
        if entry.kind == DEPOSIT or not entry.symbol:
            return
        q, p = self.positions.get(entry.symbol, (0, 0.0))
        if entry.kind == FILL:
            q, p = position_after(q, p, entry.quantity, entry.price)
        else:
            q, p = q + entry.quantity, entry.price
        if q == 0:
            self.positions.pop(entry.symbol, None)
        else:
            self.positions[entry.symbol] = (q, p)

    def quantity(self, symbol: str) -> int:
        return self.positions.get(symbol, (0, 0.0))[0]

    def marks(self, symbols, mid: np.ndarray, last_close: np.ndarray | None = None) -> np.ndarray:
        """(N,) the price each of ``symbols`` is valued at: its quote's mid, else its last close, else its average price."""
        avg = np.array([self.positions.get(s, (0, 0.0))[1] for s in symbols], dtype=np.float64)
        fallback = avg if last_close is None else np.where(np.isfinite(last_close), last_close, avg)
        with np.errstate(invalid="ignore"):
            return np.where(np.isfinite(mid) & (mid > 0), mid, fallback)

    def marked(self, symbols, mid: np.ndarray, last_close: np.ndarray | None = None) -> Portfolio:
        """The holdings over the universe ``symbols`` (N,) marked by :meth:`marks`.

        A position outside the universe (a symbol dropped from it) is valued at its average price.
        """
        qty = np.array([self.positions.get(s, (0, 0.0))[0] for s in symbols], dtype=np.float64)
        mark = self.marks(symbols, mid, last_close)
        universe = set(symbols)
        held_elsewhere = sum(q * p for s, (q, p) in self.positions.items() if s not in universe)
        value = self.cash + float(np.sum(qty * mark)) + held_elsewhere
        return Portfolio(cash=self.cash, quantity=qty, mark=mark, value=value)


def differences(book: Holdings, other: Holdings, names: tuple[str, str] = ("book", "other"),
                cash_tolerance: float = 0.0, compare_prices: bool = True) -> list[str]:
    """Where ``other`` differs from ``book``: one line per symbol, and one for cash; [] if they agree.

    ``names`` label the two sides in the lines. Quantities must be equal; cash
    within ``cash_tolerance``; average prices (``compare_prices``) exactly
    equal, as two folds of the same entries are.
    """
    first, second = names
    lines = []
    for symbol in sorted(set(book.positions) | set(other.positions)):
        (qa, pa), (qb, pb) = book.positions.get(symbol, (0, 0.0)), other.positions.get(symbol, (0, 0.0))
        if qa != qb:
            lines.append(f"{symbol}: {first} {qa:+d} shares, {second} {qb:+d}")
        elif compare_prices and pa != pb:
            lines.append(f"{symbol}: {first} average price {pa!r}, {second} {pb!r}")
    if not abs(book.cash - other.cash) <= cash_tolerance:
        lines.append(f"cash: {first} {book.cash:,.2f}, {second} {other.cash:,.2f} "
                     f"(difference {other.cash - book.cash:+.6g}, tolerance {cash_tolerance:g})")
    return lines

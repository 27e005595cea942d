"""The book against its broker: recovery of crashed cycles' orders, and a reconciliation that fails closed.

:func:`recover` books what the broker executed for orders of cycles that were
never committed (their intents, see :mod:`foxlive_core.state`).
:func:`reconcile` compares the broker's positions and cash with the book's
(the fold of its ledger, :mod:`foxlive_core.portfolio`): the engine runs it at
the start of every live cycle and halts the book on any difference.
:func:`accept_broker_view` makes the book what the broker reports, as ledger
adjustments, with the operator and the reason recorded (``foxlive reconcile
--accept``).

A broker that cannot report its positions or cash is a failure, never an
empty report: a missing position report is not evidence of a flat book.
"""

from __future__ import annotations

import math

from foxlive_core.brokers.protocol import Broker
from foxlive_core.errors import BrokerError, FoxliveError, StateError
from foxlive_core.portfolio import ADJUSTMENT, Holdings, LedgerEntry, differences
from foxlive_core.state import StateStore, utcnow


def recover(store: StateStore, book: str, broker: Broker) -> list[LedgerEntry]:
    """Resolve the intents of ``book``'s never-committed cycles at ``broker``; returns the fills booked.

    Each open intent's client order id is looked up (``broker.order``):
    every fill found is booked once into the ledger with a ``recovered_fill``
    event, and every intent is marked with the broker's answer. Nothing is
    re-decided, so what was executed is booked whatever a later run decides.
    """
    intents = store.open_intents(book)
    if not intents:
        return []
    outcomes = [(intent, broker.order(intent.client_order_id)) for intent in intents]
    return store.resolve_intents(book, outcomes, "recovery")


def broker_holdings(broker: Broker) -> Holdings:
    """The cash and positions ``broker`` reports, or BrokerError (reason ``no_report``) when it cannot say."""

    def missing(why: str) -> BrokerError:
        return BrokerError(f"the broker did not report its positions and cash ({why}); a missing report is not "
                           "evidence of a flat book: check the broker's connection, then reconcile", "no_report")

    try:
        positions = broker.positions()
        account = broker.account()
    except (FoxliveError, OSError, TimeoutError) as exc:
        raise missing(f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(positions, dict):
        raise missing(f"positions() returned {type(positions).__name__}, not a mapping of symbol to position")
    cash = getattr(account, "cash", None)
    if isinstance(cash, bool) or not isinstance(cash, (int, float)) or not math.isfinite(cash):
        raise missing(f"account() reported cash {cash!r}")
    held = {}
    for symbol, position in positions.items():
        quantity = getattr(position, "quantity", None)
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise missing(f"the position of {symbol!r} has quantity {quantity!r}, not a whole number of shares")
        held[symbol] = (quantity, float(position.avg_price))
    return Holdings(float(cash), held)


def reconcile(book: Holdings, broker: Broker, cash_tolerance: float) -> list[str]:
    """Where ``broker``'s report differs from ``book``: a line per symbol and for cash; [] when they agree.

    Quantities must be equal; cash within ``cash_tolerance``. Raises
    BrokerError when the broker cannot report (see :func:`broker_holdings`).
    """
    return differences(book, broker_holdings(broker), ("book", "broker"), cash_tolerance, compare_prices=False)


def accept_broker_view(store: StateStore, book: str, broker: Broker, operator: str, reason: str,
                       cash_tolerance: float) -> tuple[list[str], list[LedgerEntry]]:
    """Make ``book`` hold what ``broker`` reports; returns (the differences, the adjustments booked).

    Every differing position is adjusted to the broker's quantity and
    average price, and cash to the broker's, as ``adjustment`` entries of the
    ledger (source ``reconcile``) with a ``reconcile_accept`` event naming
    ``operator`` and ``reason``, in one transaction. The trading state is not
    changed: a halted book stays halted until it is resumed. Hold the book's
    lock while calling it, so no cycle runs in between.
    """
    if not operator.strip() or not reason.strip():
        raise StateError("accepting the broker's view needs an operator and a reason (who accepts it, and why)")
    view = broker_holdings(broker)
    ours = store.load(book).holdings
    found = differences(ours, view, ("book", "broker"), cash_tolerance, compare_prices=False)
    if not found:
        return [], []
    now = utcnow()
    note = f"accepted the broker's view: {operator}: {reason}"
    entries = []
    for symbol in sorted(set(ours.positions) | set(view.positions)):
        q, broker_q = ours.quantity(symbol), view.quantity(symbol)
        if q != broker_q:
            price = view.positions[symbol][1] if broker_q else 0.0
            entries.append(LedgerEntry(ADJUSTMENT, now, "reconcile", symbol=symbol, quantity=broker_q - q, price=price,
                                       note=note))
    if view.cash != ours.cash:
        entries.append(LedgerEntry(ADJUSTMENT, now, "reconcile", cash=view.cash - ours.cash, note=note))
    store.adjust(book, entries, ("reconcile_accept", operator, reason, {"differences": found}))
    return found, entries

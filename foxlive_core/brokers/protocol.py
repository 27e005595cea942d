"""The broker interface and the records it exchanges.

Modelled on alpaca-py's ``TradingClient`` so a live broker can implement
:class:`Broker` later: orders carry a caller-chosen ``client_order_id`` that
makes submission idempotent, market orders are immediate-or-cancel, and every
fill is a :class:`Fill` record. Quantities are whole shares; prices and money
are in the quote currency; every time is a timezone-aware UTC datetime.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal, Protocol, runtime_checkable

from foxlive_core.errors import BrokerError

Side = Literal["buy", "sell"]
OrderStatus = Literal["filled", "partially_filled", "rejected"]
SIDES = ("buy", "sell")


def as_utc(value: datetime, what: str) -> datetime:
    """``value`` as a plain ``datetime`` in UTC (microsecond resolution); naive times are refused."""
    if not isinstance(value, datetime):
        raise BrokerError(f"{what} must be a timezone-aware datetime, got {value!r} ({type(value).__name__})", "bad_time")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise BrokerError(
            f"{what} {value.isoformat()} is timezone-naive; give it in UTC, e.g. datetime(..., tzinfo=timezone.utc)",
            "naive_time",
        )
    utc = value.astimezone(timezone.utc)
    # Rebuilt as a plain datetime so a pandas Timestamp round-trips the ledger unchanged.
    return datetime(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, tzinfo=timezone.utc)


@dataclass(frozen=True)
class OrderRequest:
    """A market order for whole shares, immediate-or-cancel.

    ``side`` and ``quantity`` are checked by the broker, not here, so a bad
    order in a batch becomes a rejected :class:`OrderResult` instead of
    aborting the batch. ``client_order_id``, ``symbol`` and ``time`` are
    checked here (``BrokerError``): without them the order cannot be recorded.
    An aware ``time`` in another zone is converted to UTC.
    """

    client_order_id: str
    symbol: str
    side: Side
    quantity: int
    time: datetime
    order_type: Literal["market"] = "market"

    def __post_init__(self) -> None:
        if not isinstance(self.client_order_id, str) or not self.client_order_id:
            raise BrokerError(
                f"client_order_id must be a non-empty string, got {self.client_order_id!r}; "
                "give each order a unique id (it makes resubmission idempotent)",
                "bad_client_order_id",
            )
        if not isinstance(self.symbol, str) or not self.symbol:
            raise BrokerError(
                f"order {self.client_order_id!r}: symbol must be a non-empty string, got {self.symbol!r}", "bad_symbol"
            )
        object.__setattr__(self, "time", as_utc(self.time, f"order {self.client_order_id!r} time"))


@dataclass(frozen=True)
class Fill:
    """One execution. ``quantity`` > 0 shares; ``notional = quantity * price``; ``fee`` is charged to cash."""

    client_order_id: str
    symbol: str
    side: Side
    quantity: int
    price: float
    fee: float
    notional: float
    time: datetime

    @property
    def signed_quantity(self) -> int:
        """Shares added to the position: positive for a buy, negative for a sell."""
        return self.quantity if self.side == "buy" else -self.quantity


@dataclass(frozen=True)
class OrderResult:
    """What became of an order.

    ``reject_reason`` is a machine-readable code (empty unless rejected);
    ``detail`` says in words what value broke which limit and how to fix it.
    An unfilled remainder of a partially filled order is cancelled (IOC).
    """

    client_order_id: str
    symbol: str
    side: str
    requested_quantity: int
    filled_quantity: int
    status: OrderStatus
    reject_reason: str
    fill: Fill | None
    detail: str = ""


@dataclass(frozen=True)
class Position:
    """A holding marked to market. ``quantity`` is signed (negative = short).

    ``avg_price`` is the average entry price of the open quantity;
    ``realized_pnl`` is the P&L closed so far in this symbol, gross of fees.
    """

    symbol: str
    quantity: int
    avg_price: float
    market_price: float
    market_value: float
    realized_pnl: float = 0.0


@dataclass(frozen=True)
class Account:
    """Money of the account. Exposures are in dollars at the marks.

    ``equity = cash + positions_value``; ``positions_value`` (= ``net_exposure``)
    is the signed market value of every position, ``gross_exposure`` the sum of
    absolute market values.
    """

    cash: float
    equity: float
    gross_exposure: float
    net_exposure: float
    positions_value: float


@runtime_checkable
class Broker(Protocol):
    """Everything the engine needs from a broker, paper or live; nothing else may be called by it.

    Shaped like alpaca-py's ``TradingClient`` (the call each method stands
    for is named): an adapter for a real broker implements these methods over
    its API (see :mod:`foxlive_core.brokers._template`). A broker that
    simulates execution takes its quotes from a venue (see
    :mod:`foxlive_core.brokers.venue`), never from the engine.
    """

    def submit_order(self, request: OrderRequest) -> OrderResult:
        """Submit one order under its ``client_order_id`` (``submit_order``); a rejection raises ``BrokerError``."""

    def submit_orders(self, requests: Sequence[OrderRequest]) -> list[OrderResult]:
        """Submit a cycle's orders; one result per request, in order. A bad
        order is a rejected result, never an exception that aborts the batch;
        a ``client_order_id`` seen before returns its original result and
        never trades again."""

    def order(self, client_order_id: str) -> OrderResult | None:
        """The order submitted under ``client_order_id`` as the broker knows it
        (``get_order_by_client_id``), or None if the broker never received it."""

    def orders(self, since: datetime | None = None) -> list[OrderResult]:
        """Orders submitted at or after ``since`` (all when None), oldest first (``get_orders``)."""

    def cancel_order(self, client_order_id: str) -> bool:
        """Cancel a resting order (``cancel_order_by_id``); True if something was cancelled."""

    def positions(self) -> dict[str, Position]:
        """Open positions by symbol, marked to market (``get_all_positions``)."""

    def account(self) -> Account:
        """Cash, equity and exposures at the marks (``get_account``)."""

    def fills_since(self, ts: datetime) -> list[Fill]:
        """Fills with time >= ``ts`` (UTC-aware), oldest first (``get_account_activities``, type FILL)."""

    def close(self) -> None:
        """Release the connection."""


BROKER_METHODS = ("submit_order", "submit_orders", "order", "orders", "cancel_order", "positions", "account",
                  "fills_since", "close")

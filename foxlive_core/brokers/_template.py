"""The template of a broker adapter: what a new broker (Alpaca, IBKR, ...) must implement.

To add one:

1. Copy this module to ``foxlive_core/brokers/<name>.py`` and rename the class.
2. Implement every method below over the broker's API. Each says what the
   engine relies on; the alpaca-py call it corresponds to is named in
   :class:`foxlive_core.brokers.protocol.Broker`.
3. Read credentials with :func:`foxlive_core.brokers.credentials.from_environment`
   in ``__init__`` (never from the configuration, never logged: keep them as
   :class:`~foxlive_core.brokers.credentials.Secret` until the API client needs them).
4. Register an opener in ``foxlive_core.brokers.ADAPTERS`` and the kind in
   ``foxlive_core.config.BROKER_KINDS``; choose it with ``broker.kind``.

Nothing in the engine changes. ``tests/core/test_brokers.py`` checks that this
template lists exactly the methods of the protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from foxlive_core.brokers.credentials import from_environment
from foxlive_core.brokers.protocol import Account, Fill, OrderRequest, OrderResult, Position
from foxlive_core.config import BrokerConfig

# The environment variables of the template's credentials (a real adapter names its own).
CREDENTIAL_VARIABLES = ("FOXLIVE_BROKER_KEY_ID", "FOXLIVE_BROKER_SECRET_KEY")


class TemplateBroker:
    """A broker adapter to be written; every method says what it must do."""

    def __init__(self, config: BrokerConfig, account: str) -> None:
        self.config = config
        self.account_id = account
        self._credentials = from_environment(*CREDENTIAL_VARIABLES)

    def submit_order(self, request: OrderRequest) -> OrderResult:
        raise NotImplementedError(
            "submit_order: send a market order of request.quantity whole shares under request.client_order_id "
            "(the broker's idempotency key); return its OrderResult; raise BrokerError(reason) if it is rejected"
        )

    def submit_orders(self, requests: Sequence[OrderRequest]) -> list[OrderResult]:
        raise NotImplementedError(
            "submit_orders: submit each request in order and return one OrderResult per request; a rejection is a "
            "result with status 'rejected', never an exception; an id the broker knows returns its original result"
        )

    def order(self, client_order_id: str) -> OrderResult | None:
        raise NotImplementedError(
            "order: look the order up by client_order_id and return it with its fills; return None only when the "
            "broker has never received it (crash recovery books what this returns: it must be authoritative)"
        )

    def orders(self, since: datetime | None = None) -> list[OrderResult]:
        raise NotImplementedError("orders: the account's orders submitted at or after `since` (all when None), oldest first")

    def cancel_order(self, client_order_id: str) -> bool:
        raise NotImplementedError("cancel_order: cancel a resting order by client_order_id; True if one was cancelled")

    def positions(self) -> dict[str, Position]:
        raise NotImplementedError(
            "positions: every open position, symbol -> Position (signed quantity, average price, mark); raise "
            "BrokerError when the broker cannot report them (a missing report is never taken as flat)"
        )

    def account(self) -> Account:
        raise NotImplementedError("account: cash, equity and exposures; raise BrokerError when they cannot be read")

    def fills_since(self, ts: datetime) -> list[Fill]:
        raise NotImplementedError("fills_since: the account's fills with time >= ts (UTC), oldest first")

    def close(self) -> None:
        raise NotImplementedError("close: release the API client's connections")

"""Brokers: the :class:`Broker` interface, its adapters, and the one place an adapter is chosen.

``broker.kind`` in the configuration names the adapter (:data:`ADAPTERS`);
:func:`open_broker` opens it for a book. The engine sees only the
:class:`Broker` protocol. Adding a broker (Alpaca, IBKR, ...) is a new module
made from :mod:`foxlive_core.brokers._template`, one entry in
:data:`ADAPTERS` and its kind in ``foxlive_core.config.BROKER_KINDS``; no
engine code changes. Credentials come from the environment only
(:mod:`foxlive_core.brokers.credentials`).
"""

from __future__ import annotations

from pathlib import Path

from foxlive_core.brokers.paper import PaperBroker
from foxlive_core.brokers.protocol import BROKER_METHODS, Account, Broker, Fill, OrderRequest, OrderResult, Position
from foxlive_core.brokers.venue import SimulatedVenue, Venue
from foxlive_core.config import BrokerConfig
from foxlive_core.errors import BrokerError


def _paper(config: BrokerConfig, account: str, state_path: Path, venue: Venue | None) -> Broker:
    """The paper account named after the book, kept in the state file, filling against ``venue``."""
    return PaperBroker(config, state_path, account_id=account, venue=venue)


# kind -> opener(broker config, account (the book), state file, venue) -> Broker
ADAPTERS = {"paper": _paper}


def open_broker(config: BrokerConfig, account: str, state_path: Path | str, venue: Venue | None = None) -> Broker:
    """The broker of ``config.kind`` for ``account``; ``venue`` serves quotes to a simulated broker (live: the market)."""
    opener = ADAPTERS.get(config.kind)
    if opener is None:
        raise BrokerError(f"broker.kind {config.kind!r} has no adapter; use one of {sorted(ADAPTERS)}", "unsupported_broker")
    return opener(config, account, Path(state_path), venue)


def simulated_execution(config: BrokerConfig, cash: float, positions: dict[str, tuple[int, float]]):
    """(broker, venue): an in-memory paper account holding ``cash`` and ``positions``, filling on the venue.

    For a replay, which simulates execution whatever broker trades the live
    book: post each cycle's quotes to the venue before submitting its orders.
    """
    venue = SimulatedVenue()
    broker = PaperBroker(config, None, account_id="simulated", venue=venue)
    broker.load_ledger(cash, positions)
    return broker, venue


__all__ = ["ADAPTERS", "BROKER_METHODS", "Account", "Broker", "Fill", "OrderRequest", "OrderResult", "PaperBroker",
           "Position", "SimulatedVenue", "Venue", "open_broker", "simulated_execution"]

"""Brokers: the :class:`Broker` interface and the SQLite-backed :class:`PaperBroker`."""

from foxlive_core.brokers.paper import PaperBroker
from foxlive_core.brokers.protocol import Account, Broker, Fill, OrderRequest, OrderResult, Position

__all__ = ["Account", "Broker", "Fill", "OrderRequest", "OrderResult", "PaperBroker", "Position"]

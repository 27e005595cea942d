"""Market data: containers, the MarketData protocol and its sources."""

from foxlive_core.data.protocol import MarketData
from foxlive_core.data.types import BAR_FIELDS, BarPanel, QuoteSnapshot

__all__ = ["BAR_FIELDS", "BarPanel", "MarketData", "QuoteSnapshot"]

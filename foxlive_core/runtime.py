"""Building the runtime objects from a configuration: market, stores, engine.

The CLI and the Dagster resources both construct their objects here, so the
two never wire foxlive differently.
"""

from __future__ import annotations

import gc

import pandas as pd

from foxlive_core.config import FoxliveConfig
from foxlive_core.data.protocol import MarketData
from foxlive_core.engine import TradingEngine
from foxlive_core.errors import DataError
from foxlive_core.models.store import ModelStore
from foxlive_core.state import StateStore


def make_market(cfg: FoxliveConfig, symbols=None, clock=None) -> MarketData:
    """The configured market-data source over ``symbols`` (default: the configured universe).

    ``clock`` is the simulated market's "now" (see :class:`~foxlive_core.data.simulated.SimulatedMarket`;
    default the wall clock); a historical source serves what its files hold.
    """
    symbols = tuple(symbols or cfg.symbols)
    if cfg.market.source == "historical":
        from foxlive_core.data.historical import HistoricalMarket

        return HistoricalMarket(cfg.market.historical.path, cfg.market, symbols)
    from foxlive_core.data.simulated import SimulatedMarket

    return SimulatedMarket(symbols, cfg.market, clock=clock)


def open_engine(cfg: FoxliveConfig, market: MarketData | None = None, run_id: str | None = None, symbols=None) -> TradingEngine:
    """An engine on the active model run (or ``run_id``), the configured market and state store."""
    market = market or make_market(cfg, symbols)
    store = ModelStore(cfg.models_root)
    models = store.load(run_id, cfg) if run_id else store.load_active(cfg)
    return TradingEngine(cfg, market, models, StateStore(cfg.state_path), symbols=symbols)


def freeze_long_lived_objects() -> None:
    """Keep the objects alive now (modules, models, the engine) out of the garbage collector's full passes.

    Call once in a long-running process, after its set-up (``foxlive run``, ``foxlive replay``). A full
    pass walks every tracked object, these included: about 50 ms, at whichever cycle it falls on (two
    of 70 live 500-symbol cycles, each ~50 ms itself). Frozen objects are still freed by reference
    counting; only reference cycles among them are kept.
    """
    gc.collect()
    gc.freeze()


def session_bounds(market: MarketData, end, sessions: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(first bar, last bar) of the ``sessions`` complete sessions ending at or before ``end``."""
    cal = market.calendar
    end = pd.Timestamp(end)
    frame = cal.sessions(end - pd.Timedelta(days=2 * sessions + 10), end)
    frame = frame[frame["close"] <= end].iloc[-sessions:]
    first = cal.bar_times(frame["open"].iloc[0], frame["close"].iloc[0])[0]
    return first, frame["close"].iloc[-1]


def demo_window(cfg: FoxliveConfig, market: MarketData, sessions: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(first bar, last bar) the demo replays: the ``sessions`` sessions right after the market's first
    ``models.training.sessions`` sessions, on which it trains.

    Anchored at the market's start, never at today's date, so the demo gives the same
    figures whenever it is run.
    """
    need = cfg.models.training.sessions + sessions
    first = market.first_time
    frame = market.calendar.sessions(first, first + pd.Timedelta(days=3 * need + 14))
    frame = frame[frame["close"] >= first]
    end = frame["close"].iloc[need - 1] if len(frame) >= need else None
    if end is None or end > market.last_time:
        raise DataError(
            f"the demo trains on {cfg.models.training.sessions} sessions and replays {sessions} from the market's "
            f"first bar {first}, but the market ends at {market.last_time}; replay fewer sessions (--sessions)"
        )
    return session_bounds(market, end, sessions)


def resolve_bar(market: MarketData, t: pd.Timestamp, end_of_day: bool) -> pd.Timestamp:
    """``t`` itself if it has a zone; a bare date becomes the first bar (start) or the close (end) of that session."""
    if t.tzinfo is not None:
        return t
    sessions = market.calendar.sessions(t.tz_localize("UTC"), t.tz_localize("UTC") + pd.Timedelta(days=1))
    match = sessions[sessions.index == t.normalize()]
    if match.empty:
        raise DataError(f"{t.date()} is not a trading session of calendar {market.calendar.code}")
    if end_of_day:
        return match["close"].iloc[0]
    # the first bar closing after the open (on 24/7 and 24/5 the previous session closes at this open)
    return market.calendar.bar_times(match["open"].iloc[0] + pd.Timedelta(1, "ns"), match["close"].iloc[0])[0]

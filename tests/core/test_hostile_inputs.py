"""Hostile market data, end to end: files as a careless vendor ships them, loaded with repair on, replayed.

Each row of CORPUS corrupts one symbol's file at one bar of the replayed session (or from it on). The
loader repairs what it can and marks the bars it touched; the engine names what is suspect about each
symbol's bar (``bar_repair``: repaired, filled, jump) and never opens or adds to a position on it, while
the rest of the universe trades. The README's table "Bad input" lists these rows with the loader-level
and configuration/model cases tested elsewhere.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from foxlive_core.data.historical import HistoricalMarket
from tests.conftest import ACTIVE, SMALL_UNIVERSE

REPLAY_DAY = pd.Timestamp("2025-05-01T00:00Z")
FIRST_DAY = pd.Timestamp("2025-03-03T00:00Z")  # enough history before the replay for the 160-bar window
BAD_BAR = 30  # the replayed session's bar the corruption hits (its 31st cycle)

ENTERING = ("enter_", "increase_", "flip_")
# No cost hurdle and no no-trade band: the small test models' alphas are tiny, and this test needs a book
# that trades wherever a bar allows it.
FREE = {**ACTIVE, "costs": {"k1_spread": 0.0, "k2_volatility": 0.0, "k3_impact": 0.0}, "sizing": {"no_trade_band": 0.0}}


def _swap(f, i):
    f.iloc[[i, i + 1]] = f.iloc[[i + 1, i]].to_numpy()
    return f


def _duplicate(f, i):
    dup = f.iloc[[i]].assign(close=f["close"].iloc[i] * 1.01, high=f["high"].iloc[i] * 1.01)
    return pd.concat([f.iloc[: i + 1], dup, f.iloc[i + 1:]], ignore_index=True)


def _set(column, value):
    def mutate(f, i):
        f = f.astype({column: object})
        f.loc[i, column] = value(f.loc[i]) if callable(value) else value
        return f

    return mutate


def _jump(f, i):
    for c in ("open", "high", "low", "close"):
        f.loc[i:, c] = f.loc[i:, c] * 100.0  # an unadjusted 100:1 split: one jump, then ordinary moves
    return f


def _stops(f, i):
    return f.iloc[:i]  # the symbol stops trading mid-replay


# (name, mutation of the symbol's frame at row i, what the engine must say at the bad bar)
CORPUS = [
    # a row the loader drops is a repaired bar (carried from the previous close, and marked as repaired)
    ("nan close", _set("close", ""), {"repaired"}),
    ("infinite high", _set("high", "inf"), {"repaired"}),
    ("zero price", _set("open", 0.0), {"repaired"}),
    ("negative price", _set("low", -1.0), {"repaired"}),
    ("high below low", _set("high", lambda r: float(r["low"]) - 1.0), {"repaired"}),
    ("duplicate time", _duplicate, {"repaired"}),
    ("unsorted rows", _swap, {"repaired"}),
    ("100x jump", _jump, {"jump"}),
    ("stops trading", _stops, {"filled"}),  # no row at all: carried from the last close, for max_fill_bars
]


@pytest.fixture(scope="module")
def hostile(small_run, tmp_path_factory):
    """The simulated market's bars written as CSV files, clean and corrupted as CORPUS says."""
    cfg0, market, _ = small_run
    symbols = tuple(cfg0.symbols[:SMALL_UNIVERSE])
    replay_times = market.calendar.bar_times(REPLAY_DAY, REPLAY_DAY + pd.Timedelta(days=1))
    panel = market.bars(symbols, FIRST_DAY, replay_times[-1])
    bad_time = replay_times[BAD_BAR]
    dirs = {}
    for kind in ("clean", "hostile"):
        d = tmp_path_factory.mktemp(kind)
        for j, s in enumerate(symbols):
            ok = np.isfinite(panel.close[:, j])  # the simulator's own missing bars are absent rows
            f = pd.DataFrame({
                "time": [t.isoformat() for t in panel.times[ok]],
                **{c: getattr(panel, c)[ok, j] for c in ("open", "high", "low", "close", "volume")},
            }).reset_index(drop=True)
            if kind == "hostile" and j < len(CORPUS):
                i = int(np.flatnonzero(pd.to_datetime(f["time"]) == bad_time)[0])
                f = CORPUS[j][1](f, i)
            f.to_csv(d / f"{s}.csv", index=False)
        dirs[kind] = d
    return symbols, replay_times, bad_time, dirs


def _engine(engine_home, directory):
    """An engine with the small run's models on the historical market of ``directory`` (repair on)."""
    from foxlive_core.engine import TradingEngine

    base = engine_home({**FREE, "market": {"source": "historical", "historical": {"path": str(directory)}}})
    market = HistoricalMarket(directory, base.cfg.market, base.symbols)
    return TradingEngine(base.cfg, market, base.models, base.store, symbols=base.symbols), market


def test_hostile_files_never_trade_on_the_bad_bar_and_the_rest_still_trades(engine_home, hostile):
    symbols, times, bad_time, dirs = hostile
    engine, market = _engine(engine_home, dirs["hostile"])
    counted = set(market.repairs["symbol"])
    assert set(symbols[:7]) <= counted  # the loader repaired and counted the rows it could fix
    engine.replay("hostile", times[0], times[-1])
    decisions = engine.store.decisions("hostile")
    trace = engine.store.cycle_trace("hostile", bad_time)
    for j, (name, _, allowed) in enumerate(CORPUS):
        row = decisions[(decisions["symbol"] == symbols[j]) & (decisions["cycle_time"] == bad_time)].iloc[0]
        assert not (row["decision"] == "TRADE" and row["reason"].startswith(ENTERING)), (name, row.to_dict())
        said = {str(trace.decision.trace["bar_repair"][j])} - {""}
        if not trace.decision.trace["quote_ok"][j]:
            said.add("stale")
        assert said & allowed, (name, said, str(trace.decision.reason[j]))
    clean_orders = engine.store.orders("hostile")
    assert clean_orders["symbol"].isin(symbols[len(CORPUS):]).sum() > 0  # the rest of the universe trades
